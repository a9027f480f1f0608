// @ts-check
/* Practice and tests in the teacher console (teach.html): author / import / export the
 * question set, push a question, open and close a timed test, reveal, and watch the
 * answers arrive (per option, per classroom, who has not answered).
 *
 * Listens on the console's one socket (protocol.js onServerMessage: quiz-* messages,
 * welcome.quiz). Controls carry data-action: push-question, open-test, close-round, reveal,
 * quiz-import, quiz-export, quiz-add.
 */
import { download, el } from "./dom.js";
import { translator } from "./i18n.js";
import { apiJson, lessonFromPath, onServerMessage, readToken, sendMessage } from "./protocol.js";
import { isQuizMessage } from "./quiz-class.js";
import { QUIZ_TEACHER } from "./strings.js";

/** @typedef {import("./protocol.js").Message} Message */
/** @typedef {import("./quiz-class.js").Question & {option_count?: number, points?: number, tolerance?: number}} Question */
/** @typedef {import("./quiz-class.js").Round} Round */
/** @typedef {{title: string, questions: Question[], format?: string, version?: number}} QuestionSet */

const t = translator(QUIZ_TEACHER);

const st = {
  /** @type {QuestionSet} */
  set: { title: "", questions: [] },
  /** @type {Round | null} */
  round: null,
  /** @type {any} the last quiz-tally */
  tally: null,
  offset: 0,
  /** @type {{text: string, ok: boolean} | null} */
  note: null
};
const token = readToken();
const lesson = lessonFromPath();
const api = "/api/lessons/" + encodeURIComponent(lesson) + "/quiz/";
/** @type {HTMLElement | null} */
let root = null;

/** @param {string} method @param {string} path @param {unknown} [body] */
function request(method, path, body) {
  return apiJson(api + path, token, { method, body });
}

/** @param {string} text @param {boolean} ok */
function note(text, ok) {
  st.note = { text, ok };
  render();
}

/** @param {any} e */
function failed(e) {
  note(t("bad", { code: e.code, msg: e.message }), false);
}

function loadSet() {
  return request("GET", "set").then((s) => {
    st.set = s;
    render();
  }).catch(failed);
}

/** @param {unknown} set a question set, or its JSON text */
function saveSet(set) {
  return request("PUT", "set", set).then((s) => {
    st.set = s;
    note(t("saved", { n: s.questions.length }), true);
  }).catch(failed);
}

function now() {
  return Date.now() / 1000 + st.offset;
}

/** @param {string} type @param {string} raw @returns {any} */
function parseAnswer(type, raw) {
  raw = raw.trim();
  if (type === "single") {
    return parseInt(raw, 10);
  }
  if (type === "multiple") {
    return raw.split(/[,，\s]+/).filter(Boolean).map((x) => parseInt(x, 10));
  }
  if (type === "truefalse") {
    return /^(true|t|对|是|1|yes|y|√)$/i.test(raw);
  }
  if (type === "fill") {
    return raw.split("|").map((x) => x.trim()).filter(Boolean);
  }
  const m = /^(-?[\d.]+)\s*(?:±|\+-)\s*([\d.]+)$/.exec(raw);
  return m ? { value: parseFloat(m[1]), tolerance: parseFloat(m[2]) } : { value: parseFloat(raw), tolerance: 0 };
}

/** @param {string} title */
function section(title) {
  const s = el("div", { className: "quiz-section" });
  s.appendChild(el("h3", null, title));
  return s;
}

/** An option's letter (A, B, ...) or, for true/false, its word. @param {Question} q @param {number} i */
function optionName(q, i) {
  return q.type === "truefalse" ? (i === 0 ? t("yes") : t("no")) : String.fromCharCode(65 + i);
}

function render() {
  if (!root) {
    return;
  }
  root.textContent = "";
  root.appendChild(el("h2", null, t("title")));
  const bar = el("div", { className: "row" });
  const close = el("button", { type: "button", "data-action": "close-round" }, t("close"));
  close.onclick = () => sendMessage({ type: "close-round" });
  const reveal = el("button", { type: "button", "data-action": "reveal" }, t("reveal"));
  reveal.onclick = () => sendMessage({ type: "reveal" });
  const rep = el("a", { href: "/report/" + encodeURIComponent(lesson) + location.search + "#token=" + encodeURIComponent(token),
    target: "_blank", rel: "noopener", "data-action": "open-report" }, t("report"));
  close.disabled = !st.round || st.round.state === "closed";
  reveal.disabled = !st.round || !!st.round.revealed_at;
  bar.appendChild(close);
  bar.appendChild(reveal);
  bar.appendChild(rep);
  root.appendChild(bar);
  if (st.note) {
    root.appendChild(el("p", { className: "quiz-note " + (st.note.ok ? "ok" : "err"), "data-role": "quiz-note" }, st.note.text));
  }
  root.appendChild(renderLive());
  root.appendChild(renderSet());
  root.appendChild(renderAuthor());
}

function renderLive() {
  const box = section(t("current"));
  box.setAttribute("data-role", "quiz-live");
  const r = st.round;
  if (!r) {
    box.appendChild(el("p", null, t("none")));
    return box;
  }
  const head = el("p", null, (r.mode === "test" ? t("test") : t("practice")) + (r.title ? " · " + r.title : "") + " · ");
  head.appendChild(el("span", { className: "quiz-countdown-t", "data-role": "countdown" }));
  box.appendChild(head);
  const tally = st.tally && st.tally.round_id === r.round_id ? st.tally : null;
  box.appendChild(el("p", null, t("answers") + ": "))
    .appendChild(el("strong", { "data-role": "answers-total" }, tally ? tally.answers : 0));
  r.questions.forEach((/** @type {Question} */ q, qi) => {
    const qt = tally && tally.questions[q.id];
    const qbox = el("div", { className: "quiz-tally-q", "data-question": q.id });
    qbox.appendChild(el("h4", null, (qi + 1) + ". " + q.text));
    if (qt) {
      qbox.appendChild(el("p", null, t("correct_n", { c: qt.correct, n: qt.judged }) + " · " + t("students", { n: qt.students })));
    }
    if (q.option_count) {
      const table = el("table", { "data-role": "option-table" });
      const labels = q.type === "truefalse" ? [t("yes"), t("no")] : (q.options || []);
      /** @type {number[]} */
      const counts = qt ? qt.option_counts : labels.map(() => 0);
      const max = Math.max(1, ...counts);
      labels.forEach((label, i) => {
        const tr = el("tr");
        tr.appendChild(el("td", null, (q.type === "truefalse" ? "" : String.fromCharCode(65 + i) + ". ") + label));
        const td = el("td");
        td.appendChild(el("span", { "data-option-count": String(i) }, counts[i] || 0));
        const barEl = el("span", { className: "quiz-bar" });
        barEl.style.width = Math.round(120 * (counts[i] || 0) / max) + "px";
        td.appendChild(barEl);
        tr.appendChild(td);
        table.appendChild(tr);
      });
      qbox.appendChild(table);
    }
    if (qt && qt.by_classroom.length) {
      const ct = el("table", { "data-role": "classroom-table" });
      const hr = el("tr");
      [t("classroom"), t("school"), t("answer"), t("result")].forEach((h) => hr.appendChild(el("th", null, h)));
      ct.appendChild(hr);
      qt.by_classroom.forEach((/** @type {any} */ c) => {
        const tr = el("tr", { "data-classroom": c.id });
        tr.appendChild(el("td", null, c.name));
        tr.appendChild(el("td", null, c.school || ""));
        const ans = c.tally
          ? Object.keys(c.tally).map((k) => optionName(q, +k) + ":" + c.tally[k]).join(" ")
          : q.option_count ? [].concat(c.value).map((v) => optionName(q, v)).join(",") : String(c.value);
        tr.appendChild(el("td", null, ans));
        tr.appendChild(el("td", null, c.correct + "/" + c.judged));
        ct.appendChild(tr);
      });
      qbox.appendChild(ct);
    }
    if (qt) {
      qbox.appendChild(el("p", { "data-role": "not-answered" }, t("not_answered") + " (" + qt.not_answered.length + "): " +
        qt.not_answered.map((/** @type {any} */ c) => c.name).join("、")));
    }
    if (q.answer !== undefined && q.explanation) {
      qbox.appendChild(el("p", null, q.explanation));
    }
    box.appendChild(qbox);
  });
  tick();
  return box;
}

function renderSet() {
  const box = section(t("set") + (st.set.title ? " · " + st.set.title : ""));
  const table = el("table", { "data-role": "set-table" });
  st.set.questions.forEach((q) => {
    const tr = el("tr", { "data-question": q.id });
    const cb = el("input", { type: "checkbox", "data-test-question": q.id, title: t("test_sel") });
    cb.checked = true;
    const td0 = el("td");
    td0.appendChild(cb);
    tr.appendChild(td0);
    tr.appendChild(el("td", null, q.id));
    tr.appendChild(el("td", null, t(q.type)));
    tr.appendChild(el("td", null, q.text));
    const push = el("button", { type: "button", "data-action": "push-question", "data-question": q.id }, t("push"));
    push.onclick = () => sendMessage({ type: "push-question", question_id: q.id });
    const td = el("td");
    td.appendChild(push);
    tr.appendChild(td);
    table.appendChild(tr);
  });
  box.appendChild(table);
  const row = el("div", { className: "row" });
  row.appendChild(el("label", null, t("duration")));
  const dur = el("input", { type: "number", min: "0.1", step: "0.5", value: "5", "data-role": "test-duration" });
  row.appendChild(dur);
  const open = el("button", { type: "button", "data-action": "open-test" }, t("open_test"));
  open.onclick = () => {
    const checked = box.querySelectorAll("input[data-test-question]:checked");
    const ids = Array.from(checked, (c) => c.getAttribute("data-test-question"));
    sendMessage({ type: "open-test", duration: Math.max(2, Math.round(parseFloat(dur.value || "5") * 60)), question_ids: ids });
  };
  row.appendChild(open);
  const exp = el("button", { type: "button", className: "secondary", "data-action": "quiz-export" }, t("export"));
  exp.onclick = () => {
    request("GET", "set").then((s) => {
      download(new Blob([JSON.stringify(s, null, 2)], { type: "application/json" }), "quiz-" + lesson + ".json");
    });
  };
  row.appendChild(exp);
  box.appendChild(row);
  const ta = el("textarea", { "data-role": "import-json", placeholder: '{"format": "classroom-quiz", "version": 1, "questions": [...]}' });
  const file = el("input", { type: "file", accept: "application/json,.json" });
  file.onchange = () => {
    const chosen = file.files && file.files[0];
    if (chosen) {
      chosen.text().then((txt) => {
        ta.value = txt;
      });
    }
  };
  const imp = el("button", { type: "button", className: "secondary", "data-action": "quiz-import" }, t("import"));
  imp.onclick = () => {
    saveSet(ta.value);
  };
  const r2 = el("div", { className: "row" });
  r2.appendChild(file);
  r2.appendChild(imp);
  box.appendChild(ta);
  box.appendChild(r2);
  return box;
}

function renderAuthor() {
  const box = section(t("add"));
  const type = el("select", { "data-role": "new-type" });
  ["single", "multiple", "truefalse", "fill", "numeric"].forEach((k) => type.appendChild(el("option", { value: k }, t(k))));
  const text = el("input", { type: "text", placeholder: t("text"), "data-role": "new-text", size: "40" });
  const opts = el("textarea", { placeholder: t("options"), "data-role": "new-options" });
  const ans = el("input", { type: "text", placeholder: t("answer"), "data-role": "new-answer" });
  const pts = el("input", { type: "number", value: "1", min: "0.5", step: "0.5", "data-role": "new-points" });
  const add = el("button", { type: "button", "data-action": "quiz-add" }, t("add"));
  add.onclick = () => {
    const options = opts.value.split("\n").map((x) => x.trim()).filter(Boolean);
    /** @type {Question} */
    const q = { id: "", type: type.value, text: text.value, points: parseFloat(pts.value || "1") };
    const a = parseAnswer(type.value, ans.value);
    if (type.value === "single" || type.value === "multiple") {
      q.options = options;
      q.answer = a;
    } else if (type.value === "numeric") {
      q.answer = a.value;
      q.tolerance = a.tolerance;
    } else {
      q.answer = a;
    }
    const used = new Set(st.set.questions.map((x) => x.id));
    let n = st.set.questions.length + 1;
    while (used.has("q" + n)) {
      n++;
    }
    q.id = "q" + n;
    saveSet({ format: "classroom-quiz", version: 1, title: st.set.title || "", questions: st.set.questions.concat([q]) });
  };
  [type, text, pts].forEach((x) => box.appendChild(x));
  box.appendChild(opts);
  const row = el("div", { className: "row" });
  row.appendChild(ans);
  row.appendChild(add);
  box.appendChild(row);
  box.appendChild(el("p", { className: "quiz-note" }, t("answer_help")));
  return box;
}

function tick() {
  const cd = root && root.querySelector("[data-role=countdown]");
  const r = st.round;
  if (!cd || !r) {
    return;
  }
  if (r.state === "closed") {
    cd.textContent = r.revealed_at ? t("revealed") : t("closed");
    return;
  }
  if (r.closes_at) {
    const left = Math.max(0, Math.ceil(r.closes_at - now()));
    cd.textContent = t("left", { s: Math.floor(left / 60) + ":" + ("0" + (left % 60)).slice(-2) });
  } else {
    cd.textContent = "";
  }
}

/** @param {Message} msg */
function onQuiz(msg) {
  if (msg.server_time) {
    st.offset = msg.server_time - Date.now() / 1000;
  }
  switch (msg.type) {
    case "quiz-question":
    case "quiz-test":
      st.round = msg.round;
      st.tally = null;
      st.note = null;
      break;
    case "quiz-closed":
      if (st.round && st.round.round_id === msg.round_id) {
        st.round.state = "closed";
        st.round.closed_at = msg.closed_at;
      }
      break;
    case "quiz-reveal":
      if (st.round && st.round.round_id === msg.round_id) {
        st.round.questions = msg.questions;
        st.round.revealed_at = msg.at;
      }
      break;
    case "quiz-tally":
      st.tally = msg;
      break;
    case "quiz-state":
      st.round = msg.round;
      st.tally = msg.tally;
      break;
    case "error":
      note(t("bad", { code: msg.code, msg: msg.message }), false);
      return;
    default:
      return;
  }
  render();
}

/** The console's quiz panel (#quiz-teacher) on the page's socket. */
export function attachTeacherQuiz() {
  root = document.getElementById("quiz-teacher");
  if (!root) {
    return;
  }
  root.classList.add("quiz-panel");
  onServerMessage((msg) => {
    if (msg.type === "welcome") {
      if (msg.quiz) {
        st.offset = msg.quiz.server_time - Date.now() / 1000;
        st.round = msg.quiz.round;
        st.tally = msg.quiz.tally;
        render();
      }
      return false;
    }
    if (isQuizMessage(msg)) {
      onQuiz(msg);
      return true;
    }
    return false;
  });
  render();
  loadSet();
  setInterval(tick, 500);
  window.teacherQuiz = st;
}
