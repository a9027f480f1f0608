// @ts-check
/* Dates of the timetable week, as the API writes them ("YYYY-MM-DD", weekday 0 = Monday),
 * computed on calendar dates only (no time zone: the API's dates are the district's). */

/** @param {Date} d a UTC calendar date @returns {string} YYYY-MM-DD */
export function isoDate(d) {
  return d.toISOString().slice(0, 10);
}

/** @param {string} text YYYY-MM-DD @returns {Date} that calendar date at 00:00 UTC */
export function parseDate(text) {
  const [y, m, d] = text.split("-").map(Number);
  return new Date(Date.UTC(y, (m || 1) - 1, d || 1));
}

/** 0 = Monday .. 6 = Sunday. @param {string} date YYYY-MM-DD */
export function weekday(date) {
  return (parseDate(date).getUTCDay() + 6) % 7;
}

/** The Monday of the week holding `date`. @param {string} date @returns {string} */
export function mondayOf(date) {
  const d = parseDate(date);
  d.setUTCDate(d.getUTCDate() - weekday(date));
  return isoDate(d);
}

/** `date` plus `days`. @param {string} date @param {number} days @returns {string} */
export function addDays(date, days) {
  const d = parseDate(date);
  d.setUTCDate(d.getUTCDate() + days);
  return isoDate(d);
}

/** The seven dates of the week starting `monday`. @param {string} monday @returns {string[]} */
export function weekDates(monday) {
  return [0, 1, 2, 3, 4, 5, 6].map((i) => addDays(monday, i));
}

/** Today's calendar date on this machine. @returns {string} */
export function today() {
  const now = new Date();
  return isoDate(new Date(Date.UTC(now.getFullYear(), now.getMonth(), now.getDate())));
}

/** "HH:MM" -> minutes since midnight (NaN when malformed). @param {string} hhmm */
export function minutes(hhmm) {
  const m = /^(\d{1,2}):(\d{2})$/.exec(hhmm || "");
  return m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
}

/** minutes -> "HH:MM". @param {number} total */
export function hhmm(total) {
  return String(Math.floor(total / 60)).padStart(2, "0") + ":" + String(total % 60).padStart(2, "0");
}
