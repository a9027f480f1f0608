// @ts-check
/* Practice and tests on the classroom TV (class.html) and, through AnswerPanel, on the
 * student's phone (answer.html).
 *
 * On the classroom page the panel listens on the page's one socket (protocol.js
 * onServerMessage: quiz-* messages and welcome.quiz): no second connection, no second
 * roster entry. The question is shown over the video, large; the countdown uses the server
 * clock (offset from server_time); the local teacher presses one option
 * (data-action="answer") or enters the class's count per option and sends it
 * (data-action="answer-tally"). Every answer has an answer_id kept in localStorage and is
 * resent until acknowledged, so a reconnect or a reload never loses nor doubles it.
 *
 * On the TV a tap answers for a whole class: it asks first (data-action="confirm-answer" /
 * "cancel-answer"). The panel can be closed (data-action="dismiss-quiz"; the page's bar
 * offers "show-quiz" while the round lasts) and closes itself REVEAL_SHOW_S after the
 * reveal, when the right answer has been marked (✓, bold border) long enough to be read.
 */
import { el } from "./dom.js";
import { hasText, translator } from "./i18n.js";
import { lessonFromPath, onServerMessage, sendMessage } from "./protocol.js";
import { QUIZ } from "./strings.js";

/** @typedef {import("./protocol.js").Message} Message */
/**
 * A question as the server sends it (answer, explanation only once revealed).
 * @typedef {object} Question
 * @property {string} id
 * @property {string} type single | multiple | truefalse | fill | numeric
 * @property {string} text
 * @property {string[]} [options]
 * @property {string} [image]
 * @property {string} [unit]
 * @property {any} [answer]
 * @property {string} [explanation]
 */
/**
 * @typedef {object} Round
 * @property {string} round_id
 * @property {string} [mode] practice | test
 * @property {string} [title]
 * @property {string} [state]
 * @property {number} [closes_at]
 * @property {number} [closed_at]
 * @property {number} [revealed_at]
 * @property {Question[]} questions
 */
/**
 * One answer of this page: the value or the class tally, acknowledged or not.
 * @typedef {{value?: any, tally?: Record<string, number> | null, acked: boolean, answer_id: string, correct?: boolean, judged?: any}} OwnAnswer
 */

export const t = translator(QUIZ);

/** Seconds the TV shows a revealed answer before giving the picture back (6; an automated
 * browser may set `window.CLASSROOM_REVEAL_SHOW_S` in an init script: docs/page-hooks.md). */
export const REVEAL_SHOW_S = Number(/** @type {any} */ (window).CLASSROOM_REVEAL_SHOW_S) || 6;

/** Message refs whose errors belong to the quiz panels, not the page's notices. */
export const QUIZ_REFS = /^(quiz-|push-question|open-test|close-round|reveal)/;

/** True for a quiz message or an error answering one. @param {Message} msg */
export function isQuizMessage(msg) {
  return String(msg.type).indexOf("quiz-") === 0 ||
    (msg.type === "error" && QUIZ_REFS.test(msg.ref || ""));
}

/** A random answer id (24 hex digits). */
function newId() {
  const a = new Uint8Array(12);
  window.crypto.getRandomValues(a);
  return Array.from(a, (b) => ("0" + b.toString(16)).slice(-2)).join("");
}

/** @param {Question} q */
function optionLabels(q) {
  if (q.type === "truefalse") {
    return [t("yes"), t("no")];
  }
  return q.options || [];
}

/** @param {number} i */
function letter(i) {
  return String.fromCharCode(65 + i);
}

/**
 * The answering panel. mode "classroom" (TV: options + class tally) or "student" (phone).
 * Call welcome(quizState) and message(msg).
 */
export class AnswerPanel {
  /**
   * @param {HTMLElement} root
   * @param {{mode: "classroom" | "student", send: (msg: Message) => boolean, lesson?: string, who?: string}} opts
   */
  constructor(root, opts) {
    this.root = root;
    this.mode = opts.mode;
    this.send = opts.send;
    this.storeKey = "quiz-pending:" + (opts.lesson || "") + ":" + (opts.who || "");
    this.offset = 0;
    /** @type {Round | null} */
    this.round = null;
    /** @type {Record<string, OwnAnswer>} question_id -> this page's answer */
    this.own = {};
    /** @type {Record<string, Message>} answer_id -> message (not yet acked) */
    this.pending = this._loadPending();
    /** @type {any} */
    this.revealed = null;
    /** @type {Record<string, {ok: boolean, text: string}>} */
    this.notes = {};
    this._renderedOpen = false;
    /** @type {string | null} the round the local teacher closed on the TV */
    this.dismissed = null;
    /** @type {{qid: string, value: any, tally: Record<string, number> | null, text: string} | null} */
    this.confirming = null;
    /** @type {Record<string, Record<string, string>>} typed class counts per question */
    this.tallyDrafts = {};
    /** @type {() => void} called after each render (the TV's "show question" button) */
    this.onRender = () => {};
    setInterval(() => this._tick(), 250);
    setInterval(() => this._resend(), 3000);
  }

  /** @returns {Record<string, Message>} */
  _loadPending() {
    try {
      return JSON.parse(localStorage.getItem(this.storeKey) || "{}") || {};
    } catch (e) {
      return {};
    }
  }

  _savePending() {
    try {
      localStorage.setItem(this.storeKey, JSON.stringify(this.pending));
    } catch (e) {
      /* private mode */
    }
  }

  now() {
    return Date.now() / 1000 + this.offset;
  }

  /** @param {unknown} serverTime */
  setClock(serverTime) {
    if (typeof serverTime === "number") {
      this.offset = serverTime - Date.now() / 1000;
    }
  }

  /** welcome.quiz or quiz-state. @param {any} quiz */
  welcome(quiz) {
    if (!quiz) {
      return;
    }
    this.setClock(quiz.server_time);
    this.own = {};
    for (const a of quiz.own_answers || []) {
      if (quiz.round && a.round_id === quiz.round.round_id) {
        this.own[a.question_id] = { value: a.value, tally: a.tally, acked: true, answer_id: a.answer_id,
          correct: a.correct, judged: a.judged };
        delete this.pending[a.answer_id];
      }
    }
    this._savePending();
    this.round = quiz.round;
    this.revealed = quiz.round && quiz.round.revealed_at ? quiz.round : null;
    this.render();
    this._resend();
  }

  /** @param {Message} msg */
  message(msg) {
    if (msg.server_time) {
      this.setClock(msg.server_time);
    }
    switch (msg.type) {
      case "quiz-question":
      case "quiz-test":
        this.round = msg.round;
        this.own = {};
        this.revealed = null;
        this.notes = {};
        this.dismissed = null;
        this.confirming = null;
        this.tallyDrafts = {};
        this.render();
        break;
      case "quiz-closed":
        if (this.round && this.round.round_id === msg.round_id) {
          this.round.closed_at = msg.closed_at;
          this.round.state = "closed";
          this.render();
        }
        break;
      case "quiz-reveal":
        if (this.round && this.round.round_id === msg.round_id) {
          this.round.questions = msg.questions;
          this.round.revealed_at = msg.at;
          this.revealed = msg;
          this.send({ type: "quiz-state" });
          this.render();
        }
        break;
      case "quiz-state":
        this.welcome(msg);
        break;
      case "quiz-ack":
        delete this.pending[msg.answer_id];
        this._savePending();
        if (this.round && msg.round_id === this.round.round_id) {
          this.own[msg.question_id] = { value: msg.value, tally: msg.tally, acked: true, answer_id: msg.answer_id };
          this.notes[msg.question_id] = { ok: true, text: t("acked") };
          this.render();
        }
        break;
      case "error":
        this._error(msg);
        break;
      default:
        break;
    }
  }

  /** @param {Message} msg */
  _error(msg) {
    // Which pending answer failed is not named; a definite refusal drops every pending one
    // of the current round (they would all fail the same way) except on rate limiting.
    if (msg.code === "rate_limited") {
      return;
    }
    /** @type {string | null} */
    let qid = null;
    for (const id of Object.keys(this.pending)) {
      qid = this.pending[id].question_id;
      delete this.pending[id];
    }
    this._savePending();
    if (qid && this.own[qid] && !this.own[qid].acked) {
      delete this.own[qid];
    }
    const key = "e_" + msg.code;
    const text = hasText(QUIZ, key) ? t(key) : t("err", { code: msg.code });
    this.notes[qid || "_"] = { ok: false, text };
    this.render();
  }

  _resend() {
    for (const id of Object.keys(this.pending)) {
      this.send(this.pending[id]);
    }
  }

  /**
   * @param {Question} question
   * @param {any} value the answer (option index, indexes, text) or null with a tally
   * @param {Record<string, number> | null} tally the class's count per option
   */
  submit(question, value, tally) {
    if (!this.round) {
      return;
    }
    /** @type {Message} */
    const msg = { type: "quiz-answer", answer_id: newId(), round_id: this.round.round_id,
      question_id: question.id };
    if (tally) {
      msg.tally = tally;
    } else {
      msg.value = value;
    }
    this.pending[msg.answer_id] = msg;
    this._savePending();
    this.own[question.id] = { value, tally, acked: false, answer_id: msg.answer_id };
    this.notes[question.id] = { ok: true, text: t("sent") };
    this.send(msg);
    this.render();
  }

  _open() {
    const r = this.round;
    if (!r || r.state === "closed" || r.closed_at) {
      return false;
    }
    return !(r.closes_at && this.now() > r.closes_at);
  }

  /** The TV has shown the revealed answer long enough. */
  _revealDone() {
    const r = this.round;
    return this.mode === "classroom" && !!r && !!r.revealed_at &&
      this.now() - r.revealed_at > REVEAL_SHOW_S;
  }

  /** The local teacher closed this round's panel, and it could be shown again. */
  canShowAgain() {
    return this.mode === "classroom" && !!this.round && this.dismissed === this.round.round_id &&
      !this._revealDone();
  }

  dismiss() {
    if (this.round) {
      this.dismissed = this.round.round_id;
      this.confirming = null;
      this.render();
    }
  }

  showAgain() {
    this.dismissed = null;
    this.render();
  }

  _tick() {
    if (this._revealDone() && !this.root.hidden) {
      this.render(); // the answer was shown: give the picture back
      return;
    }
    const cd = this.root.querySelector(".quiz-countdown");
    const r = this.round;
    if (!cd || !r) {
      return;
    }
    if (r.closes_at && this._open()) {
      const left = Math.max(0, Math.ceil(r.closes_at - this.now()));
      const mm = Math.floor(left / 60);
      const ss = left % 60;
      cd.textContent = t("time_left", { s: mm + ":" + (ss < 10 ? "0" : "") + ss });
      cd.className = "quiz-countdown" + (left <= 10 ? " urgent" : "");
      cd.setAttribute("data-seconds-left", String(left));
    } else if (!this._open()) {
      cd.textContent = t("closed");
      if (this._renderedOpen) {
        this.render(); // time ran out: lock the buttons once
      }
    } else {
      cd.textContent = "";
    }
  }

  render() {
    this._render();
    this.onRender();
  }

  _render() {
    const root = this.root;
    root.textContent = "";
    const r = this.round;
    if (!r) {
      if (this.mode === "student") {
        root.appendChild(el("p", { className: "quiz-note" }, t("waiting")));
        root.hidden = false;
      } else {
        root.hidden = true;
      }
      return;
    }
    if (this.mode === "classroom" && r.state === "closed" && !r.revealed_at && r.closed_at &&
        this.now() - r.closed_at > 15) {
      root.hidden = true; // give the video back after a closed, unrevealed question
      return;
    }
    if (this.mode === "classroom" && (this.dismissed === r.round_id || this._revealDone())) {
      root.hidden = true;
      return;
    }
    root.hidden = false;
    const head = el("div", { className: "quiz-head" });
    head.appendChild(el("span", { className: "quiz-mode" },
      (r.mode === "test" ? t("test") : t("practice")) + (r.title ? " · " + r.title : "")));
    head.appendChild(el("span", { className: "quiz-countdown", "data-role": "countdown" }));
    if (this.mode === "classroom") {
      const close = el("button", { type: "button", className: "quiz-close", "data-action": "dismiss-quiz",
        "aria-label": t("dismiss") }, "✕ " + t("dismiss"));
      close.addEventListener("click", () => this.dismiss());
      head.appendChild(close);
    }
    root.appendChild(head);
    this._renderedOpen = this._open();
    r.questions.forEach((q, i) => root.appendChild(this._question(q, i, r.questions.length)));
    this._tick();
  }

  /** @param {Question} q @param {number} index @param {number} count */
  _question(q, index, count) {
    const box = el("div", { className: "quiz-q", "data-question": q.id });
    box.appendChild(el("div", { className: "quiz-text" }, (count > 1 ? (index + 1) + ". " : "") + q.text));
    if (q.image) {
      const img = el("img", { alt: "" });
      img.src = q.image;
      box.appendChild(img);
    }
    const open = this._open();
    const mine = this.own[q.id];
    const locked = !open || !!mine;
    const revealed = q.answer !== undefined;
    /** @type {number[]} */
    const rightIdx = revealed ? (q.type === "single" ? [q.answer] : q.type === "truefalse" ? [q.answer ? 0 : 1] :
      q.type === "multiple" ? q.answer : []) : [];
    if (q.type === "single" || q.type === "truefalse" || q.type === "multiple") {
      const labels = optionLabels(q);
      const opts = el("div", { className: "quiz-options" });
      /** @type {number[]} */
      let picked = [];
      if (mine && mine.value !== undefined && mine.value !== null) {
        picked = [].concat(mine.value);
      }
      const multi = q.type === "multiple";
      /** @type {HTMLButtonElement[]} */
      const buttons = [];
      labels.forEach((label, i) => {
        const isRight = rightIdx.indexOf(i) >= 0;
        const b = el("button", { type: "button", "data-action": "answer", "data-option": String(i) },
          (isRight ? "✓ " : "") + (q.type === "truefalse" ? "" : letter(i) + ". ") + label);
        const confirming = this.confirming && this.confirming.qid === q.id ? this.confirming : null;
        if (picked.indexOf(i) >= 0 || (confirming && [].concat(confirming.value).indexOf(i) >= 0)) {
          b.classList.add("chosen");
        }
        if (isRight) {
          b.classList.add("right");
        } else if (revealed && picked.indexOf(i) >= 0) {
          b.classList.add("wrong-pick");
        }
        b.disabled = locked;
        b.addEventListener("click", () => {
          if (multi) {
            b.classList.toggle("chosen");
            return;
          }
          this._answer(q, i, null, (q.type === "truefalse" ? "" : letter(i) + ". ") + label);
        });
        buttons.push(b);
        opts.appendChild(b);
      });
      box.appendChild(opts);
      if (multi && !locked) {
        const go = el("button", { type: "button", className: "quiz-submit", "data-action": "answer-submit" }, t("send"));
        go.addEventListener("click", () => {
          /** @type {number[]} */
          const chosen = [];
          buttons.forEach((b, i) => {
            if (b.classList.contains("chosen")) {
              chosen.push(i);
            }
          });
          if (chosen.length) {
            this._answer(q, chosen, null, chosen.map(letter).join(", "));
          }
        });
        box.appendChild(go);
      }
      if (this.mode === "classroom" && q.type !== "multiple" && !locked) {
        box.appendChild(this._tallyForm(q, labels));
      }
      if (this.confirming && this.confirming.qid === q.id && !locked) {
        box.appendChild(this._confirmBox(q));
      }
      if (mine && mine.tally) {
        const tally = mine.tally;
        const parts = Object.keys(tally).map((k) =>
          (q.type === "truefalse" ? labels[+k] : letter(+k)) + ": " + tally[k]);
        box.appendChild(el("p", { className: "quiz-note" }, parts.join("  ")));
      }
    } else {
      const row = el("div", { className: "quiz-options" });
      const input = el("input", { className: "quiz-input", type: "text",
        inputmode: q.type === "numeric" ? "decimal" : "text", maxlength: "200",
        placeholder: q.type === "numeric" ? t("num_ph") : t("fill_ph") });
      if (mine && mine.value !== undefined && mine.value !== null) {
        input.value = String(mine.value);
      }
      input.disabled = locked;
      row.appendChild(input);
      if (q.unit) {
        row.appendChild(el("span", null, q.unit));
      }
      const btn = el("button", { type: "button", className: "quiz-submit", "data-action": "answer" }, t("send"));
      btn.disabled = locked;
      btn.addEventListener("click", () => {
        const v = input.value.trim();
        if (v) {
          this._answer(q, v, null, v);
        }
      });
      row.appendChild(btn);
      box.appendChild(row);
      if (this.confirming && this.confirming.qid === q.id && !locked) {
        box.appendChild(this._confirmBox(q));
      }
      if (revealed) {
        const shown = q.type === "fill" ? [].concat(q.answer).join(" / ")
          : String(q.answer) + (q.unit ? " " + q.unit : "");
        box.appendChild(el("p", { className: "quiz-note ok" }, t("right_answer", { a: shown })));
      }
    }
    const judged = !!mine && mine.judged !== undefined && mine.judged !== null;
    if (judged && !mine.tally) {
      box.appendChild(el("p", { className: "quiz-note " + (mine.correct ? "ok" : "err"), "data-role": "result" },
        mine.correct ? t("correct") : t("wrong")));
    }
    const note = this.notes[q.id];
    if (note && !judged) {
      box.appendChild(el("p", { className: "quiz-note " + (note.ok ? "ok" : "err"), "data-role": "note" }, note.text));
    }
    if (revealed && q.explanation) {
      box.appendChild(el("div", { className: "quiz-explain" }, t("explain") + ": " + q.explanation));
    }
    return box;
  }

  /**
   * An answer from the page: the phone sends it; the TV (a whole class) asks first.
   * @param {Question} q @param {any} value @param {Record<string, number> | null} tally
   * @param {string} text the answer in words, for the confirm
   */
  _answer(q, value, tally, text) {
    if (this.mode !== "classroom") {
      this.submit(q, value, tally);
      return;
    }
    this.confirming = { qid: q.id, value, tally, text };
    this.render();
  }

  /** "Send this as the whole class's answer?" with confirm / cancel. @param {Question} q */
  _confirmBox(q) {
    const c = this.confirming;
    const box = el("div", { className: "quiz-confirm", role: "group", "data-role": "confirm" });
    box.appendChild(el("span", null, t("confirm_q", { a: c ? c.text : "" })));
    const ok = el("button", { type: "button", "data-action": "confirm-answer" }, t("confirm"));
    ok.addEventListener("click", () => {
      const now = this.confirming;
      this.confirming = null;
      if (now && now.qid === q.id) {
        this.submit(q, now.value, now.tally);
      }
    });
    const no = el("button", { type: "button", "data-action": "cancel-answer" }, t("cancel"));
    no.addEventListener("click", () => {
      this.confirming = null;
      this.render();
    });
    box.appendChild(ok);
    box.appendChild(no);
    return box;
  }

  /** The class's count per option (classroom TV). @param {Question} q @param {string[]} labels */
  _tallyForm(q, labels) {
    const drafts = this.tallyDrafts[q.id] = this.tallyDrafts[q.id] || {};
    const tally = el("div", { className: "quiz-tally" });
    tally.appendChild(el("span", null, t("tally_hint")));
    /** @type {HTMLInputElement[]} */
    const inputs = [];
    labels.forEach((label, i) => {
      const lab = el("label", null, q.type === "truefalse" ? label : letter(i));
      const inp = el("input", { type: "number", min: "0", max: "1000", inputmode: "numeric", "data-tally-option": String(i) });
      inp.value = drafts[String(i)] || "";
      inp.addEventListener("input", () => {
        drafts[String(i)] = inp.value;
      });
      inputs.push(inp);
      lab.appendChild(inp);
      tally.appendChild(lab);
    });
    const send = el("button", { type: "button", className: "quiz-submit", "data-action": "answer-tally" }, t("send_tally"));
    send.addEventListener("click", () => {
      /** @type {Record<string, number>} */
      const counts = {};
      let total = 0;
      inputs.forEach((inp, i) => {
        const n = parseInt(inp.value, 10);
        if (n > 0) {
          counts[String(i)] = n;
          total += n;
        }
      });
      if (total > 0) {
        const words = Object.keys(counts).map((k) =>
          (q.type === "truefalse" ? labels[+k] : letter(+k)) + ": " + counts[k]).join("  ");
        this._answer(q, null, counts, t("confirm_tally", { a: words }));
      }
    });
    tally.appendChild(send);
    return tally;
  }
}

/**
 * The classroom TV's panel (#quiz-class) on the page's socket: welcome.quiz and the quiz
 * messages go to it (quiz errors too: the panel shows them, not the page).
 */
export function attachClassroomQuiz() {
  const root = document.getElementById("quiz-class");
  if (!root) {
    return null;
  }
  const panel = new AnswerPanel(root, {
    mode: "classroom",
    lesson: lessonFromPath(),
    who: "classroom",
    send: sendMessage
  });
  const again = document.querySelector('[data-action="show-quiz"]');
  if (again instanceof HTMLButtonElement) {
    again.addEventListener("click", () => panel.showAgain());
    panel.onRender = () => {
      again.hidden = !panel.canShowAgain();
    };
  }
  onServerMessage((msg) => {
    if (msg.type === "welcome") {
      panel.welcome(msg.quiz);
      return false;
    }
    if (isQuizMessage(msg)) {
      panel.message(msg);
      return true;
    }
    return false;
  });
  window.classroomQuiz = panel;
  return panel;
}
