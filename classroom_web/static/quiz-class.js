/* Practice and tests on the classroom TV (class.html) and, through ClassroomQuiz.AnswerPanel,
 * on the student's phone (answer.html).
 *
 * On the classroom page this script runs before class.js and wraps Classroom.Signal so the
 * page's one socket also feeds the quiz panel (quiz-* messages and welcome.quiz): no
 * second connection, no second roster entry. The question is shown over the video, large;
 * the countdown uses the server clock (offset from server_time); the local teacher presses
 * one option (data-action="answer") or enters the class's count per option and sends it
 * (data-action="answer-tally"). Every answer has an answer_id kept in localStorage and is
 * resent until acknowledged, so a reconnect or a reload never loses nor doubles it.
 */
(function () {
  "use strict";
  var C = window.Classroom;
  var lang = C ? C.lang : (new URLSearchParams(location.search).get("lang") === "en" ? "en" : "zh");

  var STRINGS = {
    zh: {
      practice: "同步练习", test: "同步测试", time_left: "剩余 {s}", closed: "已结束作答",
      send: "提交", send_tally: "提交全班统计", tally_hint: "或输入全班每个选项的人数：",
      sent: "已提交，等待确认…", acked: "已提交 ✓", answer_here: "请作答",
      correct: "回答正确 ✓", wrong: "回答错误", explain: "解析", right_answer: "正确答案：{a}",
      yes: "对", no: "错", your_answer: "你的答案", fill_ph: "输入答案",
      num_ph: "输入数字", waiting: "等待老师出题…", err: "未能提交（{code}）",
      e_answer_too_late: "时间到，答案未被接受", e_question_closed: "老师已结束本题",
      e_already_answered: "本题已经作答", e_answer_invalid: "答案格式不对",
      e_answer_too_long: "答案太长", e_question_unknown: "题目已更新",
      e_not_your_classroom: "不能替其他课堂作答", student_title: "课堂答题"
    },
    en: {
      practice: "Practice", test: "Test", time_left: "{s} left", closed: "Answers closed",
      send: "Submit", send_tally: "Submit class count", tally_hint: "or enter how many students chose each option:",
      sent: "Sent, waiting for confirmation…", acked: "Submitted ✓", answer_here: "Your answer",
      correct: "Correct ✓", wrong: "Not correct", explain: "Explanation", right_answer: "Answer: {a}",
      yes: "True", no: "False", your_answer: "Your answer", fill_ph: "Type the answer",
      num_ph: "Type a number", waiting: "Waiting for the teacher's question…", err: "Not sent ({code})",
      e_answer_too_late: "Time is up: the answer was not accepted", e_question_closed: "The teacher closed this question",
      e_already_answered: "Already answered", e_answer_invalid: "That answer is not valid",
      e_answer_too_long: "The answer is too long", e_question_unknown: "The question has changed",
      e_not_your_classroom: "You cannot answer for another classroom", student_title: "Answer"
    }
  };

  function t(key, vars) {
    var table = STRINGS[lang] || STRINGS.zh;
    var s = table[key] !== undefined ? table[key] : (STRINGS.zh[key] !== undefined ? STRINGS.zh[key] : key);
    if (vars) {
      s = s.replace(/\{(\w+)\}/g, function (m, k) { return vars[k] !== undefined ? String(vars[k]) : m; });
    }
    return s;
  }

  function loadCss() {
    if (document.querySelector("link[data-quiz-css]")) { return; }
    var link = document.createElement("link");
    link.rel = "stylesheet";
    var v = "";
    var own = document.querySelector("script[src*='quiz-']");
    if (own) { var m = /[?&]v=([^&]+)/.exec(own.getAttribute("src")); if (m) { v = "?v=" + m[1]; } }
    link.href = "/static/quiz.css" + v;
    link.setAttribute("data-quiz-css", "1");
    document.head.appendChild(link);
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (Object.prototype.hasOwnProperty.call(attrs, k)) {
          if (k === "className") { node.className = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
        }
      }
    }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function newId() {
    var a = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  /** Wrap Classroom.Signal so quiz messages of the page's socket reach ``onQuiz``. */
  function hookSignal(onWelcome, onQuiz, onSignal) {
    if (!C || !C.Signal || C.Signal.__quizHooked) { return; }
    var Orig = C.Signal;
    function Hooked(options) {
      var opts = {};
      for (var k in options) { if (Object.prototype.hasOwnProperty.call(options, k)) { opts[k] = options[k]; } }
      var w = opts.onWelcome, m = opts.onMessage;
      opts.onWelcome = function (msg) {
        try { onWelcome(msg); } catch (e) { console.error("quiz welcome", e); }
        if (w) { return w.apply(this, arguments); }
      };
      opts.onMessage = function (msg) {
        if (msg && (String(msg.type).indexOf("quiz-") === 0 ||
            (msg.type === "error" && /^(quiz-|push-question|open-test|close-round|reveal)/.test(msg.ref || "")))) {
          try { onQuiz(msg); } catch (e) { console.error("quiz message", e); }
          if (msg.type !== "error") { return; }
          return;  // quiz errors are shown by the quiz panel
        }
        if (m) { return m.apply(this, arguments); }
      };
      Orig.call(this, opts);
      if (onSignal) { onSignal(this); }
    }
    Hooked.prototype = Orig.prototype;
    Hooked.__quizHooked = true;
    C.Signal = Hooked;
  }

  /**
   * The answering panel. mode "classroom" (TV: options + class tally) or "student" (phone).
   * send(msg) -> bool sends on the socket. Call welcome(quizState) and message(msg).
   */
  function AnswerPanel(root, opts) {
    this.root = root;
    this.mode = opts.mode;
    this.send = opts.send;
    this.storeKey = "quiz-pending:" + (opts.lesson || "") + ":" + (opts.who || "");
    this.offset = 0;
    this.round = null;
    this.own = {};        // question_id -> {value|tally, acked, answer_id}
    this.pending = this._loadPending();  // answer_id -> message (not yet acked)
    this.revealed = null;
    this.notes = {};
    var self = this;
    setInterval(function () { self._tick(); }, 250);
    setInterval(function () { self._resend(); }, 3000);
  }

  AnswerPanel.prototype._loadPending = function () {
    try { return JSON.parse(localStorage.getItem(this.storeKey) || "{}") || {}; } catch (e) { return {}; }
  };
  AnswerPanel.prototype._savePending = function () {
    try { localStorage.setItem(this.storeKey, JSON.stringify(this.pending)); } catch (e) { /* private mode */ }
  };
  AnswerPanel.prototype.now = function () { return Date.now() / 1000 + this.offset; };
  AnswerPanel.prototype.setClock = function (serverTime) {
    if (typeof serverTime === "number") { this.offset = serverTime - Date.now() / 1000; }
  };

  AnswerPanel.prototype.welcome = function (quiz) {
    if (!quiz) { return; }
    this.setClock(quiz.server_time);
    this.own = {};
    var mine = quiz.own_answers || [];
    for (var i = 0; i < mine.length; i++) {
      var a = mine[i];
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
  };

  AnswerPanel.prototype.message = function (msg) {
    if (msg.server_time) { this.setClock(msg.server_time); }
    switch (msg.type) {
      case "quiz-question":
      case "quiz-test":
        this.round = msg.round; this.own = {}; this.revealed = null; this.notes = {};
        this.render();
        break;
      case "quiz-closed":
        if (this.round && this.round.round_id === msg.round_id) {
          this.round.closed_at = msg.closed_at; this.round.state = "closed"; this.render();
        }
        break;
      case "quiz-reveal":
        if (this.round && this.round.round_id === msg.round_id) {
          this.round.questions = msg.questions; this.round.revealed_at = msg.at; this.revealed = msg;
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
    }
  };

  AnswerPanel.prototype._error = function (msg) {
    // Which pending answer failed is not named; a definite refusal drops every pending one
    // of the current round (they would all fail the same way) except on rate limiting.
    if (msg.code === "rate_limited") { return; }
    var qid = null;
    for (var id in this.pending) {
      if (Object.prototype.hasOwnProperty.call(this.pending, id)) { qid = this.pending[id].question_id; delete this.pending[id]; }
    }
    this._savePending();
    if (qid && this.own[qid] && !this.own[qid].acked) { delete this.own[qid]; }
    var key = "e_" + msg.code;
    var text = STRINGS.zh[key] ? t(key) : t("err", { code: msg.code });
    this.notes[qid || "_"] = { ok: false, text: text };
    this.render();
  };

  AnswerPanel.prototype._resend = function () {
    for (var id in this.pending) {
      if (Object.prototype.hasOwnProperty.call(this.pending, id)) { this.send(this.pending[id]); }
    }
  };

  AnswerPanel.prototype.submit = function (question, value, tally) {
    if (!this.round) { return; }
    var msg = { type: "quiz-answer", answer_id: newId(), round_id: this.round.round_id, question_id: question.id };
    if (tally) { msg.tally = tally; } else { msg.value = value; }
    this.pending[msg.answer_id] = msg;
    this._savePending();
    this.own[question.id] = { value: value, tally: tally, acked: false, answer_id: msg.answer_id };
    this.notes[question.id] = { ok: true, text: t("sent") };
    this.send(msg);
    this.render();
  };

  AnswerPanel.prototype._open = function () {
    var r = this.round;
    if (!r || r.state === "closed" || r.closed_at) { return false; }
    return !(r.closes_at && this.now() > r.closes_at);
  };

  AnswerPanel.prototype._tick = function () {
    var cd = this.root.querySelector(".quiz-countdown");
    var r = this.round;
    if (!cd || !r) { return; }
    if (r.closes_at && this._open()) {
      var left = Math.max(0, Math.ceil(r.closes_at - this.now()));
      var mm = Math.floor(left / 60), ss = left % 60;
      cd.textContent = t("time_left", { s: mm + ":" + (ss < 10 ? "0" : "") + ss });
      cd.className = "quiz-countdown" + (left <= 10 ? " urgent" : "");
      cd.setAttribute("data-seconds-left", String(left));
    } else if (!this._open()) {
      cd.textContent = t("closed");
      if (this._renderedOpen) { this.render(); }  // time ran out: lock the buttons once
    } else {
      cd.textContent = "";
    }
  };

  function optionLabels(q) {
    if (q.type === "truefalse") { return [t("yes"), t("no")]; }
    return q.options || [];
  }
  function letter(i) { return String.fromCharCode(65 + i); }

  AnswerPanel.prototype.render = function () {
    var root = this.root;
    root.textContent = "";
    var r = this.round;
    if (!r) {
      if (this.mode === "student") { root.appendChild(el("p", { className: "quiz-note" }, t("waiting"))); root.hidden = false; }
      else { root.hidden = true; }
      return;
    }
    if (this.mode === "classroom" && r.state === "closed" && !r.revealed_at && r.closed_at &&
        this.now() - r.closed_at > 15) {
      root.hidden = true;  // give the video back after a closed, unrevealed question
      return;
    }
    root.hidden = false;
    var head = el("div", { className: "quiz-head" });
    head.appendChild(el("span", { className: "quiz-mode" }, (r.mode === "test" ? t("test") : t("practice")) +
      (r.title ? " · " + r.title : "")));
    head.appendChild(el("span", { className: "quiz-countdown", "data-role": "countdown" }));
    root.appendChild(head);
    this._renderedOpen = this._open();
    for (var i = 0; i < r.questions.length; i++) { root.appendChild(this._question(r.questions[i], i, r.questions.length)); }
    this._tick();
  };

  AnswerPanel.prototype._question = function (q, index, count) {
    var self = this;
    var box = el("div", { className: "quiz-q", "data-question": q.id });
    box.appendChild(el("div", { className: "quiz-text" }, (count > 1 ? (index + 1) + ". " : "") + q.text));
    if (q.image) { var img = el("img", { alt: "" }); img.src = q.image; box.appendChild(img); }
    var open = this._open();
    var mine = this.own[q.id];
    var locked = !open || !!mine;
    var revealed = q.answer !== undefined;
    var rightIdx = revealed ? (q.type === "single" ? [q.answer] : q.type === "truefalse" ? [q.answer ? 0 : 1] :
      q.type === "multiple" ? q.answer : []) : [];
    if (q.type === "single" || q.type === "truefalse" || q.type === "multiple") {
      var labels = optionLabels(q);
      var opts = el("div", { className: "quiz-options" });
      var picked = [];
      if (mine && mine.value !== undefined && mine.value !== null) { picked = [].concat(mine.value); }
      var multi = q.type === "multiple";
      var buttons = [];
      labels.forEach(function (label, i) {
        var b = el("button", { type: "button", "data-action": "answer", "data-option": String(i) },
          (q.type === "truefalse" ? "" : letter(i) + ". ") + label);
        if (picked.indexOf(i) >= 0) { b.classList.add("chosen"); }
        if (rightIdx.indexOf(i) >= 0) { b.classList.add("right"); }
        b.disabled = locked;
        b.addEventListener("click", function () {
          if (multi) { b.classList.toggle("chosen"); return; }
          self.submit(q, i, null);
        });
        buttons.push(b);
        opts.appendChild(b);
      });
      box.appendChild(opts);
      if (multi && !locked) {
        var go = el("button", { type: "button", className: "quiz-submit", "data-action": "answer-submit" }, t("send"));
        go.addEventListener("click", function () {
          var chosen = [];
          buttons.forEach(function (b, i) { if (b.classList.contains("chosen")) { chosen.push(i); } });
          if (chosen.length) { self.submit(q, chosen, null); }
        });
        box.appendChild(go);
      }
      if (this.mode === "classroom" && q.type !== "multiple" && !locked) {
        var tally = el("div", { className: "quiz-tally" });
        tally.appendChild(el("span", null, t("tally_hint")));
        var inputs = [];
        labels.forEach(function (label, i) {
          var lab = el("label", null, q.type === "truefalse" ? label : letter(i));
          var inp = el("input", { type: "number", min: "0", max: "1000", inputmode: "numeric", "data-tally-option": String(i) });
          inputs.push(inp);
          lab.appendChild(inp);
          tally.appendChild(lab);
        });
        var send = el("button", { type: "button", className: "quiz-submit", "data-action": "answer-tally" }, t("send_tally"));
        send.addEventListener("click", function () {
          var counts = {}, total = 0;
          inputs.forEach(function (inp, i) {
            var n = parseInt(inp.value, 10);
            if (n > 0) { counts[String(i)] = n; total += n; }
          });
          if (total > 0) { self.submit(q, null, counts); }
        });
        tally.appendChild(send);
        box.appendChild(tally);
      }
      if (mine && mine.tally) {
        var parts = [];
        for (var k in mine.tally) { if (Object.prototype.hasOwnProperty.call(mine.tally, k)) { parts.push((q.type === "truefalse" ? labels[+k] : letter(+k)) + ": " + mine.tally[k]); } }
        box.appendChild(el("p", { className: "quiz-note" }, parts.join("  ")));
      }
    } else {
      var row = el("div", { className: "quiz-options" });
      var input = el("input", { className: "quiz-input", type: q.type === "numeric" ? "text" : "text",
        inputmode: q.type === "numeric" ? "decimal" : "text", maxlength: "200",
        placeholder: q.type === "numeric" ? t("num_ph") : t("fill_ph") });
      if (mine && mine.value !== undefined && mine.value !== null) { input.value = String(mine.value); }
      input.disabled = locked;
      row.appendChild(input);
      if (q.unit) { row.appendChild(el("span", null, q.unit)); }
      var btn = el("button", { type: "button", className: "quiz-submit", "data-action": "answer" }, t("send"));
      btn.disabled = locked;
      btn.addEventListener("click", function () {
        var v = input.value.trim();
        if (v) { self.submit(q, v, null); }
      });
      row.appendChild(btn);
      box.appendChild(row);
      if (revealed) {
        var shown = q.type === "fill" ? [].concat(q.answer).join(" / ") : String(q.answer) + (q.unit ? " " + q.unit : "");
        box.appendChild(el("p", { className: "quiz-note ok" }, t("right_answer", { a: shown })));
      }
    }
    if (mine && mine.judged !== undefined && mine.judged !== null && !mine.tally) {
      box.appendChild(el("p", { className: "quiz-note " + (mine.correct ? "ok" : "err"), "data-role": "result" },
        mine.correct ? t("correct") : t("wrong")));
    }
    var note = this.notes[q.id];
    if (note && !(mine && mine.judged !== undefined && mine.judged !== null)) {
      box.appendChild(el("p", { className: "quiz-note " + (note.ok ? "ok" : "err"), "data-role": "note" }, note.text));
    }
    if (revealed && q.explanation) {
      box.appendChild(el("div", { className: "quiz-explain" }, t("explain") + ": " + q.explanation));
    }
    return box;
  };

  window.ClassroomQuiz = { t: t, strings: STRINGS, lang: lang, el: el, loadCss: loadCss, hookSignal: hookSignal,
    AnswerPanel: AnswerPanel, newId: newId };

  // On the classroom TV page: hook the page's socket before class.js creates it.
  function setupClassroom() {
    var root = document.getElementById("quiz-class");
    if (!root) { return; }
    loadCss();
    var signal = null;
    var panel = new AnswerPanel(root, {
      mode: "classroom",
      lesson: C && C.lessonFromPath ? C.lessonFromPath() : "",
      who: "classroom",
      send: function (m) { return signal ? signal.send(m) : false; }
    });
    hookSignal(function (welcome) { panel.welcome(welcome.quiz); },
      function (msg) { panel.message(msg); },
      function (s) { signal = s; });
    window.classroomQuiz = panel;
  }
  if (document.getElementById("quiz-class")) { setupClassroom(); }
  else if (document.readyState === "loading" && !document.body) {
    // script in <head>: wait for the container
    document.addEventListener("DOMContentLoaded", setupClassroom);
  }
})();
