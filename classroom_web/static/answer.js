/* /answer/{lesson}: a student's phone answers practice and tests (student token in #token=). */
(function () {
  "use strict";
  var C = window.Classroom, Q = window.ClassroomQuiz;
  var status = document.getElementById("status");
  var token = C.readToken();
  document.title = Q.t("student_title");
  document.documentElement.lang = C.lang === "en" ? "en" : "zh-CN";
  if (!token) { status.textContent = C.t("no_token") + " " + C.t("no_token_detail"); return; }
  var signal = null;
  var sub = "";
  try { sub = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub || ""; } catch (e) { /* opaque */ }
  var panel = new Q.AnswerPanel(document.getElementById("quiz-answer"), {
    mode: "student", lesson: C.lessonFromPath(), who: sub,
    send: function (m) { return signal ? signal.send(m) : false; }
  });
  panel.render();
  signal = new C.Signal({
    token: token,
    lesson: C.lessonFromPath(),
    onWelcome: function (w) { status.textContent = (w.name || "") + (w.school ? " · " + w.school : ""); panel.welcome(w.quiz); },
    onMessage: function (m) {
      if (m.type.indexOf("quiz-") === 0 || m.type === "error") { panel.message(m); }
      if (m.type === "lesson" && m.lesson_state === "ended") { status.textContent = C.t("ended"); }
    },
    onClose: function () { status.textContent = C.t("reconnecting"); },
    onFatal: function () { status.textContent = C.t("invalid_link") + " " + C.t("invalid_link_detail"); }
  });
  signal.connect();
  window.studentQuiz = panel;
})();
