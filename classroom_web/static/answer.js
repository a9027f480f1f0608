// @ts-check
/* /answer/{lesson}: a student's phone answers practice and tests (student token in #token=). */
import { $ } from "./dom.js";
import { htmlLang, t } from "./i18n.js";
import { Signal, lessonFromPath, readToken, tokenSubject } from "./protocol.js";
import { AnswerPanel, t as quizText } from "./quiz-class.js";

function main() {
  const status = $("#status");
  const token = readToken();
  document.title = quizText("student_title");
  document.documentElement.lang = htmlLang;
  if (!token) {
    status.textContent = t("no_token") + " " + t("no_token_detail");
    return;
  }
  /** @type {Signal | null} */
  let signal = null;
  const panel = new AnswerPanel($("#quiz-answer"), {
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
    },
    onMessage: (m) => {
      if (m.type.indexOf("quiz-") === 0 || m.type === "error") {
        panel.message(m);
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
