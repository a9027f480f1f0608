// @ts-check
/* /answer/{lesson}: a student's phone answers practice and tests (student token in #token=).
 *
 * The phone's panel is quiz-class.js's AnswerPanel with two changes for a person typing on
 * a phone: an acknowledged answer redraws only its own question (the one being typed in is
 * left alone), and any other redraw keeps what was typed, picked, focused and selected in
 * questions not yet sent. After the reveal the student sees their own result (right, of
 * answered, of all; unanswered as unanswered): nothing about anyone else.
 */
import { $, el } from "./dom.js";
import { htmlLang, t } from "./i18n.js";
import { Signal, lessonFromPath, readToken, tokenSubject } from "./protocol.js";
import { AnswerPanel, t as quizText } from "./quiz-class.js";

/** @typedef {import("./protocol.js").Message} Message */
/** @typedef {{value: string, chosen: number[], focused: boolean, start: number | null, end: number | null}} Draft */

/** AnswerPanel that never wipes a draft (see the header). */
class PhonePanel extends AnswerPanel {
  /** @param {Message} msg */
  message(msg) {
    if (msg.type === "quiz-ack" && this.round && msg.round_id === this.round.round_id) {
      const index = this.round.questions.findIndex((q) => q.id === msg.question_id);
      const box = this.root.querySelector(`.quiz-q[data-question="${CSS.escape(String(msg.question_id))}"]`);
      if (index >= 0 && box) {
        delete this.pending[msg.answer_id];
        this._savePending();
        this.own[msg.question_id] = { value: msg.value, tally: msg.tally, acked: true, answer_id: msg.answer_id };
        this.notes[msg.question_id] = { ok: true, text: quizText("acked") };
        const q = this.round.questions[index];
        box.replaceWith(this._question(q, index, this.round.questions.length));
        return;
      }
    }
    super.message(msg);
  }

  render() {
    const drafts = this._drafts();
    super.render();
    this._restore(drafts);
  }

  /** What is typed or picked in questions not yet answered. @returns {Record<string, Draft>} */
  _drafts() {
    /** @type {Record<string, Draft>} */
    const out = {};
    this.root.querySelectorAll(".quiz-q[data-question]").forEach((box) => {
      const id = box.getAttribute("data-question") || "";
      if (this.own[id]) {
        return;
      }
      const input = box.querySelector("input.quiz-input");
      const chosen = Array.from(box.querySelectorAll('[data-action="answer"].chosen'),
        (b) => parseInt(b.getAttribute("data-option") || "-1", 10));
      const focused = !!input && document.activeElement === input;
      if (input instanceof HTMLInputElement) {
        out[id] = { value: input.value, chosen, focused, start: input.selectionStart, end: input.selectionEnd };
      } else if (chosen.length) {
        out[id] = { value: "", chosen, focused: false, start: null, end: null };
      }
    });
    return out;
  }

  /** @param {Record<string, Draft>} drafts */
  _restore(drafts) {
    for (const id of Object.keys(drafts)) {
      const box = this.root.querySelector(`.quiz-q[data-question="${CSS.escape(id)}"]`);
      const d = drafts[id];
      if (!box || this.own[id]) {
        continue;
      }
      const input = box.querySelector("input.quiz-input");
      if (input instanceof HTMLInputElement && !input.disabled) {
        input.value = d.value;
        if (d.focused) {
          input.focus();
          if (d.start !== null && d.end !== null) {
            input.setSelectionRange(d.start, d.end);
          }
        }
      }
      box.querySelectorAll('[data-action="answer"][data-option]').forEach((b) => {
        const i = parseInt(b.getAttribute("data-option") || "-1", 10);
        if (d.chosen.indexOf(i) >= 0 && b instanceof HTMLButtonElement && !b.disabled) {
          b.classList.add("chosen");
        }
      });
    }
  }
}

/**
 * The student's own result of a revealed round: right, answered, all, score.
 * @param {any} quiz welcome.quiz or a quiz-state message
 * @returns {{correct: number, answered: number, total: number, score: number, max: number} | null}
 */
export function ownResult(quiz) {
  const round = quiz && quiz.round;
  if (!round || !round.revealed_at || !Array.isArray(round.questions)) {
    return null;
  }
  /** @type {Record<string, any>} */
  const mine = {};
  (quiz.own_answers || []).forEach((/** @type {any} */ a) => {
    if (a.round_id === round.round_id) {
      mine[a.question_id] = a;
    }
  });
  let correct = 0;
  let answered = 0;
  let score = 0;
  let max = 0;
  round.questions.forEach((/** @type {any} */ q) => {
    max += typeof q.points === "number" ? q.points : 1;
    const a = mine[q.id];
    if (a) {
      answered += 1;
      correct += a.correct ? 1 : 0;
      score += typeof a.score === "number" ? a.score : 0;
    }
  });
  return { correct, answered, total: round.questions.length, score, max };
}

/** @param {HTMLElement} box @param {any} quiz */
function renderSummary(box, quiz) {
  const r = ownResult(quiz);
  box.hidden = !r;
  if (!r) {
    return;
  }
  box.textContent = "";
  box.appendChild(el("h2", null, quizText("summary_title")));
  box.appendChild(el("p", { "data-role": "summary-correct" },
    quizText("summary_correct", { c: r.correct, a: r.answered, n: r.total })));
  box.appendChild(el("p", { "data-role": "summary-unanswered" },
    quizText("summary_unanswered", { u: r.total - r.answered })));
  const round = (/** @type {number} */ n) => Math.round(n * 10) / 10;
  box.appendChild(el("p", { "data-role": "summary-score" },
    quizText("summary_score", { s: round(r.score), m: round(r.max) })));
}

function main() {
  const status = $("#status");
  const summary = $("#quiz-summary");
  const token = readToken();
  document.title = quizText("student_title");
  document.documentElement.lang = htmlLang;
  if (!token) {
    status.textContent = t("no_token") + " " + t("no_token_detail");
    return;
  }
  /** @type {Signal | null} */
  let signal = null;
  const panel = new PhonePanel($("#quiz-answer"), {
    mode: "student",
    lesson: lessonFromPath(),
    who: tokenSubject(token),
    send: (m) => (signal ? signal.send(m) : false)
  });
  panel.render();
  signal = new Signal({
    token,
    lesson: lessonFromPath(),
    onWelcome: (w) => {
      status.textContent = (w.name || "") + (w.school ? " · " + w.school : "");
      panel.welcome(w.quiz);
      renderSummary(summary, w.quiz);
    },
    onMessage: (m) => {
      if (m.type.indexOf("quiz-") === 0 || m.type === "error") {
        panel.message(m);
      }
      if (m.type === "quiz-state") {
        renderSummary(summary, m); // after the reveal the panel asks for it: answers judged
      } else if (m.type === "quiz-question" || m.type === "quiz-test") {
        summary.hidden = true;
      }
      if (m.type === "lesson" && m.lesson_state === "ended") {
        status.textContent = t("ended");
      }
    },
    onClose: () => {
      status.textContent = t("reconnecting");
    },
    onFatal: () => {
      status.textContent = t("invalid_link") + " " + t("invalid_link_detail");
    }
  });
  signal.connect();
  window.studentQuiz = panel;
}

main();
