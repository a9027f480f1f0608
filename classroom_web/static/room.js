// @ts-check
/* The classroom device (/room): paired once, then never touched (docs/school-week.md).
 *
 * No credential in localStorage -> ask for a pairing code (POST /api/pairing), show it big,
 * poll its status with the page's poll token (header) until an admin enters it; the
 * credential is "<device id>.<poll token>", kept in localStorage, sent only in the
 * Authorization header (never in a URL). Then ask GET /api/room/next when told
 * (poll_after): idle (the next lesson), countdown (subject, teacher, school, start),
 * and from LEAD before the start the classroom view of the lesson, /class/{lesson} in an
 * iframe with the server-minted classroom token in its fragment (class.js does the live
 * lesson; nothing of it is copied here). The students' join code and QR code are shown
 * while a lesson is on. A refused credential (revoked) -> pairing again. A rotated
 * credential in a reply replaces the stored one.
 */
import { $ } from "./dom.js";
import { applyI18n, lang, translator } from "./i18n.js";
import { ROOM } from "./strings-room.js";

const t = translator(ROOM);
const KEY = "classroom.device";
const LANG = lang === "en" ? "?lang=en" : "";
applyI18n(t);

const pairing = $("#pairing");
const schedule = $("#schedule");
const live = $("#live");
const joinBox = $("#join");
const offline = $("#offline");

/** @type {{phase: string, lesson: string | null, state: string | null, deviceId: string | null, code: string | null, joinCode: string | null, skew: number, plan: any, polls: number}} */
const st = { phase: "start", lesson: null, state: null, deviceId: null, code: null, joinCode: null, skew: 0, plan: null, polls: 0 };
/** @type {number | null} */
let timer = null;
/** @type {HTMLIFrameElement | null} */
let frame = null;

/** @param {() => void} fn @param {number} ms */
function later(fn, ms) {
  if (timer !== null) {
    window.clearTimeout(timer);
  }
  timer = window.setTimeout(() => {
    timer = null;
    fn();
  }, ms);
}

function credential() {
  try {
    return window.localStorage.getItem(KEY) || "";
  } catch (e) {
    return "";
  }
}

/** @param {string | null} value */
function storeCredential(value) {
  try {
    if (value) {
      window.localStorage.setItem(KEY, value);
    } else {
      window.localStorage.removeItem(KEY);
    }
  } catch (e) { /* private mode: paired until reload */ }
}

/** @param {string} path @param {RequestInit} [init] */
async function call(path, init) {
  const resp = await fetch(path, { cache: "no-store", ...(init || {}) });
  let body = null;
  try {
    body = await resp.json();
  } catch (e) { /* empty */ }
  return { status: resp.status, body };
}

/* ------------------------------------------------------------ pairing */

async function pair() {
  st.phase = "pairing";
  st.deviceId = null;
  leaveLesson();
  schedule.hidden = true;
  pairing.hidden = false;
  const got = await call("/api/pairing", { method: "POST" }).catch(() => /** @type {any} */ (null));
  if (!got || got.status !== 201) {
    $("#pair-note").textContent = t(got && got.status === 429 ? "pair_limited" : "offline");
    later(pair, got && got.status === 429 ? 60000 : 5000);
    return;
  }
  const { code, poll_token: pollToken, expires_at: expires } = got.body;
  st.code = code;
  $("#pair-code").textContent = code.slice(0, 3) + " " + code.slice(3);
  $("#pair-note").textContent = t("pair_expires", { minutes: Math.round((expires * 1000 - Date.now()) / 60000) });
  pollPairing(code, pollToken);
}

/** @param {string} code @param {string} pollToken */
async function pollPairing(code, pollToken) {
  const got = await call(`/api/pairing/${encodeURIComponent(code)}/status`, {
    headers: { "X-Pairing-Token": pollToken }
  }).catch(() => /** @type {any} */ (null));
  if (!got || got.status >= 500) {
    later(() => pollPairing(code, pollToken), 3000);
    return;
  }
  if (got.status !== 200 || got.body.state === "expired") {
    pair();
    return;
  }
  if (got.body.state === "paired") {
    storeCredential(got.body.device_id + "." + pollToken);
    st.code = null;
    pairing.hidden = true;
    next();
    return;
  }
  later(() => pollPairing(code, pollToken), 2000);
}

/* ------------------------------------------------------------ the plan */

async function next() {
  const cred = credential();
  if (!cred) {
    pair();
    return;
  }
  const got = await call("/api/room/next", { headers: { Authorization: "Device " + cred } }).catch(() => /** @type {any} */ (null));
  st.polls += 1;
  if (!got || got.status >= 500 || got.status === 429) {
    offline.hidden = false;
    later(next, 5000);
    return;
  }
  offline.hidden = true;
  if (got.status === 401) { // revoked, or unknown: pair again
    storeCredential(null);
    pair();
    $("#pair-note").textContent = t("revoked");
    return;
  }
  const plan = got.body;
  if (plan.credential) {
    storeCredential(plan.credential);
  }
  st.plan = plan;
  st.deviceId = plan.device_id;
  st.skew = plan.server_time * 1000 - Date.now();
  show(plan);
  later(next, Math.max(1, plan.poll_after || 30) * 1000);
}

/** @param {number} epoch */
function clock(epoch) {
  return new Date(epoch * 1000).toLocaleTimeString(lang === "en" ? "en" : "zh-CN", { hour: "2-digit", minute: "2-digit" });
}

/** @param {number} seconds */
function span(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return m + ":" + String(s % 60).padStart(2, "0");
}

/** @param {any} lesson */
function card(lesson) {
  $("#lesson-card").hidden = !lesson;
  if (!lesson) {
    return;
  }
  $("#lesson-subject").textContent = [lesson.subject, lesson.title !== lesson.subject ? lesson.title : ""].filter(Boolean).join(" · ");
  $("#lesson-who").textContent = [lesson.teacher, lesson.school].filter(Boolean).join(" · ");
  $("#lesson-when").textContent = t("starts_at", { time: lesson.starts || clock(lesson.starts_at) });
}

/** @param {any} plan */
function show(plan) {
  pairing.hidden = true;
  schedule.hidden = false;
  $("#room-name").textContent = [plan.school && plan.school.name, plan.classroom && plan.classroom.name].filter(Boolean).join(" · ");
  const cur = plan.current;
  if (cur) {
    st.phase = "lesson";
    st.state = cur.state;
    enterLesson(cur);
    const onAir = cur.state === "live";
    schedule.hidden = onAir;
    $("#headline").textContent = onAir ? "" : cur.state === "countdown" ? "" : t("waiting_teacher");
    card(cur);
    if (cur.join) {
      joinBox.hidden = false;
      st.joinCode = cur.join.code;
      $("#join-code").textContent = cur.join.code;
      $("#join-qr", HTMLImageElement).src = cur.join.qr;
    }
  } else {
    st.phase = "idle";
    st.state = null;
    leaveLesson();
    $("#headline").textContent = plan.next ? t("next_lesson") : t("idle");
    card(plan.next);
    if (!plan.next) {
      $("#lesson-when").textContent = t("no_next");
    }
  }
  tick();
}

function tick() {
  const plan = st.plan;
  const lesson = plan && (plan.current || plan.next);
  const left = lesson ? lesson.starts_at - (Date.now() + st.skew) / 1000 : 0;
  $("#countdown").textContent = lesson && left > 0 && left < 3600 ? t("starts_in", { time: span(left) }) : "";
}

/** @param {any} cur */
function enterLesson(cur) {
  if (frame && st.lesson === cur.lesson_id) {
    return;
  }
  leaveLesson();
  st.lesson = cur.lesson_id;
  frame = document.createElement("iframe");
  frame.allow = "autoplay; camera; microphone; fullscreen";
  frame.title = cur.title || cur.lesson_id;
  // the token rides in the fragment: never sent to the server
  frame.src = `/class/${encodeURIComponent(cur.lesson_id)}${LANG}#token=${encodeURIComponent(cur.token)}`;
  live.append(frame);
  live.hidden = false;
}

function leaveLesson() {
  if (frame) {
    frame.remove();
    frame = null;
  }
  st.lesson = null;
  st.joinCode = null;
  live.hidden = true;
  joinBox.hidden = true;
}

/** The classroom view's own state (window.classroomStats of class.js), if it is loaded. */
async function frameStats() {
  const win = frame && /** @type {any} */ (frame.contentWindow);
  if (!win || typeof win.classroomStats !== "function") {
    return null;
  }
  try {
    return await win.classroomStats();
  } catch (e) {
    return null;
  }
}

/** True when the classroom view gave up (its token refused: the device was revoked). */
function frameFatal() {
  try {
    const doc = frame && frame.contentDocument;
    const status = doc && doc.querySelector("#status");
    return !!status && status.getAttribute("data-state") === "fatal";
  } catch (e) {
    return false;
  }
}

// The lesson's start and end reach the classroom view at once: ask the plan again then,
// instead of waiting for the next poll; likewise when the view's token was refused.
let askedOnFatal = 0;
window.setInterval(async () => {
  tick();
  const stats = await frameStats();
  if (stats && st.phase === "lesson" && stats.lessonState !== st.state &&
      (stats.lessonState === "live" || stats.lessonState === "ended")) {
    st.state = stats.lessonState;
    next();
  } else if (st.phase === "lesson" && frameFatal() && Date.now() - askedOnFatal > 5000) {
    askedOnFatal = Date.now();
    next();
  }
}, 1000);

/** For tests and kiosks: what the page is doing, and the classroom view's stats. */
/** @type {any} */ (window).roomState = async function () {
  return { phase: st.phase, lesson: st.lesson, state: st.state, deviceId: st.deviceId, code: st.code,
    joinCode: st.joinCode, polls: st.polls, paired: !!credential(), frame: await frameStats() };
};

next();
