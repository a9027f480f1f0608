// @ts-check
/* The on-air badge of the teacher console and the classroom TV (docs/media.md, "On air").
 *
 * The relay sends a classroom media only while the lesson is live (the gate is on the
 * server: media_relay, Relay.set_on_air); this badge says so on both pages. It plugs in like
 * quality.js (its own <script type="module">) and reads the lesson state from the server's
 * `welcome` and `lesson` messages through protocol.js. Markup: an element `#on-air` (hidden
 * until the first state); it gets `data-state` = waiting | live | ended and its text:
 *
 *   teacher:   live "直播中" / "On air";  waiting "未开始 — 仅您可见" (the console's preview:
 *              the classrooms get nothing yet);  ended "已下课 — 各课堂已停止接收"
 *   classroom: live "直播中";  waiting "等待老师开始上课";  ended "本节课已结束"
 *   both, while the socket is down (protocol.js onSocketState): `data-state="lost"`,
 *              "连接中断" / "Reconnecting" — never "on air" over the page's reconnecting
 *              notice; the next welcome brings the server's state back.
 *   classroom, live but no new picture for 5 s (watchdog.js onMediaHealth):
 *              `data-state="no-media"`, "直播中 · 没有画面" / "直播中 · 只有声音" — never a
 *              bare "on air" over a black screen.
 *
 * `window.classroomOnAir()` gives {state, role, text} (tests).
 */
import { translator } from "./i18n.js";
import { onServerMessage, onSocketState, pageRole } from "./protocol.js";
import { ONAIR } from "./strings.js";
import { onMediaHealth } from "./watchdog.js";

const t = translator(ONAIR);
const STATES = new Set(["waiting", "live", "ended"]);

/** @type {{state: string | null, role: string | null, lost: boolean, health: string}} */
const seen = { state: null, role: null, lost: false, health: "idle" };

/** The badge's text for a state and role. @param {string} state @param {string | null} role */
export function onAirText(state, role) {
  if (state === "lost") {
    return t("lost");
  }
  if (state === "no-media") {
    return t(seen.health === "sound-only" ? "sound_only" : "no_picture");
  }
  if (state === "live") {
    return t("live");
  }
  const who = role === "teacher" ? "teacher" : "class";
  return t(who + "_" + (state === "ended" ? "ended" : "waiting"));
}

function render() {
  const badge = document.getElementById("on-air");
  if (!badge || !seen.state) {
    return;
  }
  const state = shownState();
  badge.hidden = false;
  badge.setAttribute("data-state", state);
  badge.setAttribute("data-role", seen.role === "teacher" ? "teacher" : "classroom");
  badge.textContent = onAirText(state, seen.role);
}

/** What the badge shows: the lesson's state, or "lost" while the socket is down (an ended
 * lesson stays ended: nothing is claimed). */
function shownState() {
  if (seen.lost && seen.state !== "ended") {
    return "lost";
  }
  const stalled = seen.health === "sound-only" || seen.health === "no-media";
  return seen.state === "live" && stalled && seen.role !== "teacher" ? "no-media"
    : String(seen.state);
}

/** @param {string} state @param {string | null} role */
function update(state, role) {
  if (!STATES.has(state)) {
    return;
  }
  seen.state = state;
  seen.lost = false;
  seen.role = role || seen.role || pageRole();
  render();
}

onServerMessage((msg) => {
  if (msg.type === "welcome" || msg.type === "lesson") {
    update(String(msg.lesson_state || ""), msg.type === "welcome" ? msg.role : pageRole());
  }
  return false;
});

onSocketState((open) => {
  seen.lost = !open;
  render();
});

onMediaHealth((health) => {
  seen.health = health;
  render();
});

// loaded after the page's welcome came (a slow module fetch): ask the page
const stats = /** @type {any} */ (window).classroomStats;
if (pageRole() && typeof stats === "function") {
  /** @param {{lessonState?: string}} s */
  const fromStats = (s) => {
    if (!seen.state && s && s.lessonState) {
      update(s.lessonState, pageRole());
    }
  };
  stats().then(fromStats, () => { /* the page has no stats yet: the next message tells */ });
}

/** @returns {{state: string | null, role: string | null, text: string}} */
function classroomOnAir() {
  return { state: seen.state ? shownState() : null, role: seen.role,
           text: seen.state ? onAirText(shownState(), seen.role) : "" };
}
/** @type {any} */ (window).classroomOnAir = classroomOnAir;
