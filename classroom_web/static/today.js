// @ts-check
/* The teacher's day (/teach#token=<day token>): today's lessons from the timetable, one
 * click to each console (/teach/{lesson}#token=<that lesson's teacher token>). The day
 * token is exchanged by GET /api/teacher/today (Authorization header) for per-lesson
 * tokens; tokens only ever travel in fragments and headers. */
import { $, el } from "./dom.js";
import { applyI18n, lang, translator } from "./i18n.js";
import { readToken } from "./protocol.js";
import { ROOM } from "./strings-room.js";

const t = translator(ROOM);
const LANG = lang === "en" ? "?lang=en" : "";
applyI18n(t);

/** @type {{count: number, status: string}} */
const st = { count: 0, status: "loading" };
/** @type {any} */ (window).todayState = () => ({ ...st });

async function load() {
  const token = readToken();
  const note = $("#today-note");
  if (!token) {
    note.textContent = t("today_need_link");
    st.status = "no_token";
    return;
  }
  const resp = await fetch("/api/teacher/today", { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    note.textContent = t("today_need_link") + (body.error ? " (" + body.error.message + ")" : "");
    st.status = "refused";
    return;
  }
  $("#who").textContent = [body.teacher && body.teacher.name, body.date].filter(Boolean).join(" · ");
  const list = $("#lessons");
  list.textContent = "";
  for (const lesson of body.lessons) {
    const item = el("li", { className: "lesson", "data-lesson": lesson.lesson_id, "data-state": lesson.state });
    item.append(el("span", { className: "time" }, `${lesson.starts}–${lesson.ends}`),
      el("span", { className: "subject" }, [lesson.subject, lesson.grade, lesson.title !== lesson.subject ? lesson.title : ""].filter(Boolean).join(" · ")),
      el("span", { className: "state" }, t("state_" + lesson.state)));
    if (lesson.token) {
      item.append(el("a", { className: "open", href: `/teach/${encodeURIComponent(lesson.lesson_id)}${LANG}#token=${encodeURIComponent(lesson.token)}` }, t("today_open")));
    }
    list.append(item);
  }
  st.count = body.lessons.length;
  st.status = "ready";
  note.textContent = body.lessons.length ? "" : t("today_none");
}

load().catch((err) => {
  $("#today-note").textContent = String(err);
  st.status = "failed";
});
