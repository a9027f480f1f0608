// @ts-check
/* Practice and tests in the teacher console (teach.html): author / import / export the
 * question set, push a question, open and close a timed test, reveal, and watch the
 * answers arrive (per option, per classroom, who has not answered).
 *
 * Two regions: the live round (#quiz-live: close / reveal / report, the tally) in the
 * console's side column, and the question set with its editor (#quiz-teacher) under the
 * grid. Each is built once; a tally or a round only redraws the live figures, the set only
 * its table, so what the teacher is typing (focus, selection, text) is never lost.
 * Answers are entered as letters (A–F, checkboxes for multiple choice); the set keeps
 * 0-based option indexes as before.
 *
 * Listens on the console's one socket (protocol.js onServerMessage: quiz-* messages,
 * welcome.quiz). Controls carry data-action: push-question, open-test, close-round, reveal,
 * quiz-import, quiz-export, quiz-add.
 */
import { download, el } from "./dom.js";
import { setDisabled } from "./grid.js";
import { lang, translator } from "./i18n.js";
import { apiJson, lessonFromPath, onServerMessage, readToken, sendMessage } from "./protocol.js";
import { isQuizMessage } from "./quiz-class.js";
import { QUIZ_TEACHER } from "./strings.js";

/** @typedef {import("./protocol.js").Message} Message */
/** @typedef {import("./quiz-class.js").Question & {option_count?: number, points?: number, tolerance?: number}} Question */
/** @typedef {import("./quiz-class.js").Round} Round */
/** @typedef {{title: string, questions: Question[], format?: string, version?: number}} QuestionSet */

const t = translator(QUIZ_TEACHER);

/** Letters offered for the right answer of a choice question. */
export const LETTERS = ["A", "B", "C", "D", "E", "F"];

const st = {
  /** @type {QuestionSet} */
  set: { title: "", questions: [] },
  /** @type {Round | null} */
  round: null,
  /** @type {any} the last quiz-tally */
  tally: null,
  offset: 0,
  /** @type {{text: string, ok: boolean} | null} */
  note: null,
  /** @type {Set<string>} questions the teacher left out of the next test */
  leftOut: new Set()
};
const token = readToken();
const lesson = lessonFromPath();
const api = "/api/lessons/" + encodeURIComponent(lesson) + "/quiz/";

/** The parts built once; render functions only fill them. */
const ui = {
  /** @type {HTMLElement | null} */ live: null,
  /** @type {HTMLElement | null} */ liveBody: null,
  /** @type {HTMLElement | null} */ note: null,
  /** @type {HTMLButtonElement | null} */ close: null,
  /** @type {HTMLButtonElement | null} */ reveal: null,
  /** @type {HTMLElement | null} */ setTitle: null,
  /** @type {HTMLElement | null} */ setBody: null
};

/** @param {string} key @param {number} n a count: "1 student", "2 students" */
function plural(key, n) {
  return t(n === 1 ? key + "_one" : key, { n });
}

/** @param {string} method @param {string} path @param {unknown} [body] */
function request(method, path, body) {
  return apiJson(api + path, token, { method, body });
}

/** @param {string} text @param {boolean} ok */
function note(text, ok) {
  st.note = { text, ok };
  renderNote();
}

/** @param {any} e */
function failed(e) {
  note(t("bad", { code: e.code, msg: e.message }), false);
}

function loadSet() {
  return request("GET", "set").then((s) => {
    st.set = s;
    renderSet();
  }).catch(failed);
}

/** @param {unknown} set a question set, or its JSON text @returns {Promise<boolean>} saved */
function saveSet(set) {
  return request("PUT", "set", set).then((s) => {
    st.set = s;
    renderSet();
    note(plural("saved", s.questions.length), true);
    return true;
  }, (e) => {
    failed(e);
    return false;
  });
}

function now() {
  return Date.now() / 1000 + st.offset;
}

/**
 * The typed answer of a fill-in, true/false or numeric question (choice questions are
 * picked by letter). @param {string} type @param {string} raw @returns {any}
 */
export function parseTyped(type, raw) {
  raw = raw.trim();
  if (type === "truefalse") {
    return /^(true|t|对|是|1|yes|y|√)$/i.test(raw);
  }
  if (type === "fill") {
    return raw.split("|").map((x) => x.trim()).filter(Boolean);
  }
  const m = /^(-?[\d.]+)\s*(?:±|\+-)\s*([\d.]+)$/.exec(raw);
  return m ? { value: parseFloat(m[1]), tolerance: parseFloat(m[2]) } : { value: parseFloat(raw), tolerance: 0 };
}

/** @param {string} title @param {string} [role] */
function section(title, role) {
  const s = el("div", { className: "quiz-section" });
  if (role) {
    s.setAttribute("data-role", role);
  }
  s.appendChild(el("h3", null, title));
  return s;
}

/** A labelled field: <label for> + the control. @param {string} text @param {HTMLElement} field @param {string} id */
function labelled(text, field, id) {
  field.id = id;
  const wrap = el("span", { className: "quiz-field" });
  wrap.appendChild(el("label", { for: id }, text));
  wrap.appendChild(field);
  return wrap;
}

/** An option's letter (A, B, ...) or, for true/false, its word. @param {Question} q @param {number} i */
function optionName(q, i) {
  return q.type === "truefalse" ? (i === 0 ? t("yes") : t("no")) : String.fromCharCode(65 + i);
}

/* ------------------------------------------------------------ live region */

function buildLive() {
  const root = ui.live;
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
  const rep = el("a", { className: "report-link", target: "_blank", rel: "noopener",
    "data-action": "open-report", href: reportUrl() }, t("report"));
  bar.appendChild(close);
  bar.appendChild(reveal);
  bar.appendChild(rep);
  root.appendChild(bar);
  ui.note = el("p", { className: "quiz-note", "data-role": "quiz-note", role: "status" });
  root.appendChild(ui.note);
  ui.liveBody = el("div", { className: "quiz-section", "data-role": "quiz-live" });
  root.appendChild(ui.liveBody);
  ui.close = close;
  ui.reveal = reveal;
}

/** The learning report of this lesson (token in the fragment, never sent to the server). */
export function reportUrl() {
  const q = lang === "en" ? "?lang=en" : "";
  return "/report/" + encodeURIComponent(lesson) + q + "#token=" + encodeURIComponent(token);
}

function renderNote() {
  if (!ui.note) {
    return;
  }
  ui.note.textContent = st.note ? st.note.text : "";
  ui.note.className = "quiz-note" + (st.note ? (st.note.ok ? " ok" : " err") : "");
}

function renderBar() {
  if (ui.close && ui.reveal) {
    setDisabled(ui.close, !st.round || st.round.state === "closed");
    setDisabled(ui.reveal, !st.round || !!st.round.revealed_at);
  }
}

/** Redraw the live figures only (no form field lives here); the region keeps its scroll. */
function renderLive() {
  renderBar();
  const box = ui.liveBody;
  if (!box) {
    return;
  }
  const scroller = ui.live;
  const scrolled = scroller ? scroller.scrollTop : 0;
  box.textContent = "";
  const r = st.round;
  if (!r) {
    box.appendChild(el("p", null, t("current") + ": " + t("none")));
    return;
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
      qbox.appendChild(el("p", null, t("correct_n", { c: qt.correct, n: qt.judged }) + " · " + plural("students", qt.students)));
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
        const td = el("td", { className: "count" });
        td.appendChild(el("span", { "data-option-count": String(i) }, counts[i] || 0));
        const barEl = el("span", { className: "quiz-bar" });
        barEl.style.width = Math.round(100 * (counts[i] || 0) / max) + "px";
        td.appendChild(barEl);
        tr.appendChild(td);
        table.appendChild(tr);
      });
      qbox.appendChild(table);
    }
    if (qt && qt.by_classroom.length) {
      const ct = el("table", { "data-role": "classroom-table" });
      const hr = el("tr");
      [t("classroom"), t("answer"), t("result")].forEach((h) => hr.appendChild(el("th", null, h)));
      ct.appendChild(hr);
      qt.by_classroom.forEach((/** @type {any} */ c) => {
        const tr = el("tr", { "data-classroom": c.id });
        tr.appendChild(el("td", { title: c.school || "" }, c.name));
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
  if (scroller) {
    scroller.scrollTop = scrolled;
  }
}

/* ------------------------------------------------------------ question set and editor */

function buildEditor() {
  const root = document.getElementById("quiz-teacher");
  if (!root) {
    return;
  }
  root.textContent = "";
  root.classList.add("quiz-panel");
  root.appendChild(buildSet());
  root.appendChild(buildAuthor());
}

function buildSet() {
  const box = section(t("set"), "quiz-set");
  ui.setTitle = /** @type {HTMLElement} */ (box.firstChild);
  const table = el("table", { "data-role": "set-table" });
  const hr = el("tr");
  [t("test_sel"), "", t("type"), t("text"), ""].forEach((h) => hr.appendChild(el("th", null, h)));
  table.appendChild(hr);
  ui.setBody = el("tbody");
  table.appendChild(ui.setBody);
  box.appendChild(table);
  const row = el("div", { className: "row" });
  const dur = el("input", { type: "number", min: "0.1", step: "0.5", value: "5", "data-role": "test-duration" });
  row.appendChild(labelled(t("duration"), dur, "quiz-duration"));
  const open = el("button", { type: "button", "data-action": "open-test" }, t("open_test"));
  open.onclick = () => {
    const ids = st.set.questions.map((q) => q.id).filter((id) => !st.leftOut.has(id));
    sendMessage({ type: "open-test", duration: Math.max(2, Math.round(parseFloat(dur.value || "5") * 60)), question_ids: ids });
  };
  row.appendChild(open);
  box.appendChild(row);
  // import / export: folded away until wanted
  const more = el("div", { className: "quiz-io", id: "quiz-io" });
  more.hidden = true;
  const fold = el("button", { type: "button", className: "secondary", "data-action": "quiz-io",
    "aria-expanded": "false", "aria-controls": "quiz-io" }, t("import") + " / " + t("export"));
  fold.onclick = () => {
    more.hidden = !more.hidden;
    fold.setAttribute("aria-expanded", more.hidden ? "false" : "true");
  };
  row.appendChild(fold);
  const exp = el("button", { type: "button", className: "secondary", "data-action": "quiz-export" }, t("export"));
  exp.onclick = () => {
    request("GET", "set").then((s) => {
      download(new Blob([JSON.stringify(s, null, 2)], { type: "application/json" }), "quiz-" + lesson + ".json");
    }).catch(failed);
  };
  const ta = el("textarea", { "data-role": "import-json", placeholder: '{"format": "classroom-quiz", "version": 1, "questions": [...]}' });
  const taField = labelled(t("import_text"), ta, "quiz-import-json");
  taField.classList.add("wide");
  more.appendChild(taField);
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
  r2.appendChild(labelled(t("import_file"), file, "quiz-import-file"));
  r2.appendChild(imp);
  r2.appendChild(exp);
  more.appendChild(r2);
  box.appendChild(more);
  return box;
}

/** Redraw the set's rows (after a load or a save), keeping which ones are left out of a test. */
function renderSet() {
  if (ui.setTitle) {
    ui.setTitle.textContent = t("set") + (st.set.title ? " · " + st.set.title : "");
  }
  const body = ui.setBody;
  if (!body) {
    return;
  }
  body.textContent = "";
  const table = body.parentElement;
  if (table) {
    table.hidden = !st.set.questions.length; // no header over an empty set
  }
  st.set.questions.forEach((q) => {
    const tr = el("tr", { "data-question": q.id });
    const id = "quiz-sel-" + q.id;
    const cb = el("input", { type: "checkbox", id, "data-test-question": q.id });
    cb.checked = !st.leftOut.has(q.id);
    cb.onchange = () => {
      if (cb.checked) {
        st.leftOut.delete(q.id);
      } else {
        st.leftOut.add(q.id);
      }
    };
    const td0 = el("td");
    td0.appendChild(cb);
    tr.appendChild(td0);
    const tdId = el("td"); // the question's id labels its "in the test" box
    tdId.appendChild(el("label", { for: id, title: t("test_sel") }, q.id));
    tr.appendChild(tdId);
    tr.appendChild(el("td", { className: "nowrap" }, t(q.type)));
    tr.appendChild(el("td", null, q.text));
    const push = el("button", { type: "button", "data-action": "push-question", "data-question": q.id }, t("push"));
    push.onclick = () => sendMessage({ type: "push-question", question_id: q.id });
    const td = el("td");
    td.appendChild(push);
    tr.appendChild(td);
    body.appendChild(tr);
  });
}

function buildAuthor() {
  const box = section(t("add"), "quiz-author");
  const type = el("select", { "data-role": "new-type" });
  ["single", "multiple", "truefalse", "fill", "numeric"].forEach((k) => type.appendChild(el("option", { value: k }, t(k))));
  const text = el("input", { type: "text", "data-role": "new-text", size: "40" });
  const opts = el("textarea", { placeholder: t("options_ph"), "data-role": "new-options" });
  const pts = el("input", { type: "number", value: "1", min: "0.5", step: "0.5", "data-role": "new-points" });
  const typed = el("input", { type: "text", "data-role": "new-answer" });

  // the right answer of a choice question: one box per letter (radio for single choice)
  const letters = el("fieldset", { className: "quiz-letters", "data-role": "new-letters" });
  letters.appendChild(el("legend", null, t("answer")));
  /** @type {HTMLInputElement[]} */
  const boxes = LETTERS.map((L, i) => {
    const id = "quiz-letter-" + L;
    const inp = el("input", { type: "checkbox", id, name: "quiz-letter", value: String(i), "data-letter": L });
    const wrap = el("span", { className: "quiz-letter" });
    wrap.appendChild(inp);
    wrap.appendChild(el("label", { for: id }, L));
    letters.appendChild(wrap);
    return inp;
  });
  const typedField = labelled(t("answer"), typed, "quiz-new-answer");

  /** Show the letter boxes for choice types (as many as there are options, at least two). */
  const sync = () => {
    const choice = type.value === "single" || type.value === "multiple";
    letters.hidden = !choice;
    typedField.hidden = choice;
    opts.disabled = !choice;
    const count = opts.value.split("\n").map((x) => x.trim()).filter(Boolean).length;
    boxes.forEach((b, i) => {
      b.type = type.value === "single" ? "radio" : "checkbox";
      const wrap = b.parentElement;
      if (wrap) {
        wrap.hidden = i >= Math.max(2, count);
      }
    });
    typed.placeholder = type.value === "truefalse" ? t("tf_ph") : type.value === "fill" ? t("fill_ph") : t("num_ph");
  };
  type.onchange = sync;
  opts.oninput = sync;

  const add = el("button", { type: "button", "data-action": "quiz-add" }, t("add"));
  add.onclick = () => {
    const options = opts.value.split("\n").map((x) => x.trim()).filter(Boolean);
    /** @type {Question} */
    const q = { id: "", type: type.value, text: text.value.trim(), points: parseFloat(pts.value || "1") };
    if (!q.text) {
      note(t("need_text"), false);
      return;
    }
    if (type.value === "single" || type.value === "multiple") {
      const picked = boxes.filter((b, i) => b.checked && i < options.length).map((b) => parseInt(b.value, 10));
      if (options.length < 2) {
        note(t("need_options"), false);
        return;
      }
      if (!picked.length) {
        note(t("need_letter"), false);
        return;
      }
      q.options = options;
      q.answer = type.value === "single" ? picked[0] : picked;
    } else {
      const a = parseTyped(type.value, typed.value);
      if (type.value === "numeric") {
        q.answer = a.value;
        q.tolerance = a.tolerance;
      } else {
        q.answer = a;
      }
    }
    const used = new Set(st.set.questions.map((x) => x.id));
    let n = st.set.questions.length + 1;
    while (used.has("q" + n)) {
      n++;
    }
    q.id = "q" + n;
    saveSet({ format: "classroom-quiz", version: 1, title: st.set.title || "", questions: st.set.questions.concat([q]) })
      .then((ok) => {
        if (ok) {
          text.value = "";
          opts.value = "";
          typed.value = "";
          boxes.forEach((b) => {
            b.checked = false;
          });
          sync();
        }
      });
  };
  const row1 = el("div", { className: "row" });
  row1.appendChild(labelled(t("type"), type, "quiz-new-type"));
  row1.appendChild(labelled(t("points"), pts, "quiz-new-points"));
  box.appendChild(row1);
  const textField = labelled(t("text"), text, "quiz-new-text");
  textField.classList.add("grow");
  box.appendChild(textField);
  const optsField = labelled(t("options"), opts, "quiz-new-options");
  optsField.classList.add("wide");
  box.appendChild(optsField);
  const row = el("div", { className: "row" });
  row.appendChild(letters);
  row.appendChild(typedField);
  row.appendChild(add);
  box.appendChild(row);
  box.appendChild(el("p", { className: "quiz-note" }, t("answer_help")));
  sync();
  return box;
}

function tick() {
  const cd = ui.liveBody && ui.liveBody.querySelector("[data-role=countdown]");
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
      renderNote();
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
  renderLive();
}

/** The console's quiz regions (#quiz-live, #quiz-teacher) on the page's socket. */
export function attachTeacherQuiz() {
  ui.live = document.getElementById("quiz-live") || document.getElementById("quiz-teacher");
  if (!ui.live) {
    return;
  }
  ui.live.classList.add("quiz-panel");
  const editor = document.getElementById("quiz-teacher");
  if (editor && editor !== ui.live) {
    buildLive();
    buildEditor();
  } else {
    buildEditor();
    const liveBox = el("div");
    ui.live.insertBefore(liveBox, ui.live.firstChild);
    ui.live = liveBox;
    buildLive();
  }
  onServerMessage((msg) => {
    if (msg.type === "welcome") {
      if (msg.quiz) {
        st.offset = msg.quiz.server_time - Date.now() / 1000;
        st.round = msg.quiz.round;
        st.tally = msg.quiz.tally;
        renderLive();
      }
      return false;
    }
    if (isQuizMessage(msg)) {
      onQuiz(msg);
      return true;
    }
    return false;
  });
  renderLive();
  renderSet();
  loadSet();
  setInterval(tick, 500);
  window.teacherQuiz = st;
}
