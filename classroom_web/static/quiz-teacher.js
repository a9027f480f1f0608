/* Practice and tests in the teacher console (teach.html): author / import / export the
 * question set, push a question, open and close a timed test, reveal, and watch the
 * answers arrive (per option, per classroom, who has not answered).
 *
 * Runs before teach.js and wraps Classroom.Signal so the console's one socket feeds this
 * panel (quiz-* messages, welcome.quiz). Controls carry data-action: push-question,
 * open-test, close-round, reveal, quiz-import, quiz-export, quiz-add.
 */
(function () {
  "use strict";
  var C = window.Classroom;
  var lang = C ? C.lang : "zh";
  var S = {
    zh: {
      title: "同步练习 / 同步测试", set: "题库", import: "导入 JSON", export: "导出 JSON", add: "添加题目",
      type: "题型", text: "题目", options: "选项（每行一个）", answer: "答案", points: "分值",
      single: "单选", multiple: "多选", truefalse: "判断", fill: "填空", numeric: "数值",
      push: "推送练习", test_sel: "选入测试", duration: "时长（分钟）", open_test: "开始测试",
      close: "结束作答", reveal: "公布答案", report: "学情报告", current: "当前", none: "暂无题目",
      answers: "已作答", not_answered: "未作答课堂", by_class: "各课堂", option: "选项", count: "人数",
      classroom: "课堂", school: "学校", result: "结果", correct_n: "正确 {c}/{n}", students: "学生 {n} 人",
      saved: "已保存 {n} 道题", left: "剩余 {s}", closed: "已结束", revealed: "已公布答案",
      answer_help: "单选填序号 0,1,2…；多选如 0,2；判断填 对/错；填空可用 | 分隔多个答案；数值如 3.14±0.01",
      bad: "出错了（{code}）：{msg}", yes: "对", no: "错", practice: "练习", test: "测试"
    },
    en: {
      title: "Practice / Tests", set: "Question set", import: "Import JSON", export: "Export JSON", add: "Add question",
      type: "Type", text: "Question", options: "Options (one per line)", answer: "Answer", points: "Points",
      single: "Single choice", multiple: "Multiple choice", truefalse: "True / false", fill: "Fill in", numeric: "Numeric",
      push: "Push", test_sel: "In test", duration: "Duration (min)", open_test: "Start test",
      close: "Close answers", reveal: "Reveal answer", report: "Learning report", current: "Current", none: "No question yet",
      answers: "Answers", not_answered: "Not answered", by_class: "Classrooms", option: "Option", count: "Count",
      classroom: "Classroom", school: "School", result: "Result", correct_n: "{c}/{n} right", students: "{n} students",
      saved: "Saved {n} questions", left: "{s} left", closed: "closed", revealed: "answer revealed",
      answer_help: "single: index 0,1,2…; multiple: e.g. 0,2; true/false: true/false; fill: alternatives separated by |; numeric: 3.14±0.01",
      bad: "Error ({code}): {msg}", yes: "True", no: "False", practice: "Practice", test: "Test"
    }
  };
  function t(k, v) {
    var s = (S[lang] || S.zh)[k]; if (s === undefined) { s = S.zh[k] || k; }
    if (v) { s = s.replace(/\{(\w+)\}/g, function (m, n) { return v[n] !== undefined ? String(v[n]) : m; }); }
    return s;
  }
  function el(tag, attrs, text) {
    var n = document.createElement(tag);
    for (var k in (attrs || {})) { if (k === "className") { n.className = attrs[k]; } else { n.setAttribute(k, attrs[k]); } }
    if (text !== undefined && text !== null) { n.textContent = String(text); }
    return n;
  }
  function loadCss() {
    if (document.querySelector("link[data-quiz-css]")) { return; }
    var own = document.querySelector("script[src*='quiz-teacher']");
    var m = own && /[?&]v=([^&]+)/.exec(own.getAttribute("src"));
    var link = el("link", { rel: "stylesheet", href: "/static/quiz.css" + (m ? "?v=" + m[1] : ""), "data-quiz-css": "1" });
    document.head.appendChild(link);
  }

  var st = { signal: null, set: { title: "", questions: [] }, round: null, tally: null, offset: 0, note: null };
  var token = C ? C.readToken() : "";
  var lesson = C ? C.lessonFromPath() : "";
  var api = "/api/lessons/" + encodeURIComponent(lesson) + "/quiz/";

  function request(method, path, body) {
    var init = { method: method, headers: { Authorization: "Bearer " + token } };
    if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = typeof body === "string" ? body : JSON.stringify(body); }
    return fetch(api + path, init).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) { var e = new Error((data.error && data.error.message) || r.status); e.code = data.error && data.error.code; throw e; }
        return data;
      });
    });
  }
  function note(text, ok) { st.note = { text: text, ok: ok }; render(); }
  function loadSet() {
    return request("GET", "set").then(function (s) { st.set = s; render(); }).catch(function (e) { note(t("bad", { code: e.code, msg: e.message }), false); });
  }
  function saveSet(set) {
    return request("PUT", "set", set).then(function (s) { st.set = s; note(t("saved", { n: s.questions.length }), true); })
      .catch(function (e) { note(t("bad", { code: e.code, msg: e.message }), false); });
  }
  function send(msg) { return st.signal ? st.signal.send(msg) : false; }
  function now() { return Date.now() / 1000 + st.offset; }

  function parseAnswer(type, raw, nOptions) {
    raw = raw.trim();
    if (type === "single") { return parseInt(raw, 10); }
    if (type === "multiple") { return raw.split(/[,，\s]+/).filter(Boolean).map(function (x) { return parseInt(x, 10); }); }
    if (type === "truefalse") { return /^(true|t|对|是|1|yes|y|√)$/i.test(raw); }
    if (type === "fill") { return raw.split("|").map(function (x) { return x.trim(); }).filter(Boolean); }
    var m = /^(-?[\d.]+)\s*(?:±|\+-)\s*([\d.]+)$/.exec(raw);
    return m ? { value: parseFloat(m[1]), tolerance: parseFloat(m[2]) } : { value: parseFloat(raw), tolerance: 0 };
  }

  var root = null;
  function section(title) { var s = el("div", { className: "quiz-section" }); s.appendChild(el("h3", null, title)); return s; }

  function render() {
    if (!root) { return; }
    root.textContent = "";
    root.appendChild(el("h2", null, t("title")));
    var bar = el("div", { className: "row" });
    var close = el("button", { type: "button", "data-action": "close-round" }, t("close"));
    close.onclick = function () { send({ type: "close-round" }); };
    var reveal = el("button", { type: "button", "data-action": "reveal" }, t("reveal"));
    reveal.onclick = function () { send({ type: "reveal" }); };
    var rep = el("a", { href: "/report/" + encodeURIComponent(lesson) + location.search + "#token=" + encodeURIComponent(token),
      target: "_blank", rel: "noopener", "data-action": "open-report" }, t("report"));
    close.disabled = !st.round || st.round.state === "closed";
    reveal.disabled = !st.round || !!st.round.revealed_at;
    bar.appendChild(close); bar.appendChild(reveal); bar.appendChild(rep);
    root.appendChild(bar);
    if (st.note) { root.appendChild(el("p", { className: "quiz-note " + (st.note.ok ? "ok" : "err"), "data-role": "quiz-note" }, st.note.text)); }
    root.appendChild(renderLive());
    root.appendChild(renderSet());
    root.appendChild(renderAuthor());
  }

  function renderLive() {
    var box = section(t("current"));
    box.setAttribute("data-role", "quiz-live");
    var r = st.round;
    if (!r) { box.appendChild(el("p", null, t("none"))); return box; }
    var head = el("p", null, (r.mode === "test" ? t("test") : t("practice")) + (r.title ? " · " + r.title : "") + " · ");
    var cd = el("span", { className: "quiz-countdown-t", "data-role": "countdown" });
    head.appendChild(cd);
    box.appendChild(head);
    var tally = st.tally && st.tally.round_id === r.round_id ? st.tally : null;
    box.appendChild(el("p", null, t("answers") + ": ")).appendChild(el("strong", { "data-role": "answers-total" }, tally ? tally.answers : 0));
    r.questions.forEach(function (q, qi) {
      var qt = tally && tally.questions[q.id];
      var qbox = el("div", { className: "quiz-tally-q", "data-question": q.id });
      qbox.appendChild(el("h4", null, (qi + 1) + ". " + q.text));
      if (qt) {
        qbox.appendChild(el("p", null, t("correct_n", { c: qt.correct, n: qt.judged }) + " · " + t("students", { n: qt.students })));
      }
      if (q.option_count) {
        var table = el("table", { "data-role": "option-table" });
        var labels = q.type === "truefalse" ? [t("yes"), t("no")] : (q.options || []);
        var max = 1;
        var counts = qt ? qt.option_counts : labels.map(function () { return 0; });
        counts.forEach(function (c) { max = Math.max(max, c); });
        labels.forEach(function (label, i) {
          var tr = el("tr");
          tr.appendChild(el("td", null, (q.type === "truefalse" ? "" : String.fromCharCode(65 + i) + ". ") + label));
          var td = el("td");
          td.appendChild(el("span", { "data-option-count": String(i) }, counts[i] || 0));
          var barEl = el("span", { className: "quiz-bar" });
          barEl.style.width = Math.round(120 * (counts[i] || 0) / max) + "px";
          td.appendChild(barEl);
          tr.appendChild(td);
          table.appendChild(tr);
        });
        qbox.appendChild(table);
      }
      if (qt && qt.by_classroom.length) {
        var ct = el("table", { "data-role": "classroom-table" });
        var hr = el("tr"); [t("classroom"), t("school"), t("answer"), t("result")].forEach(function (h) { hr.appendChild(el("th", null, h)); });
        ct.appendChild(hr);
        qt.by_classroom.forEach(function (c) {
          var tr = el("tr", { "data-classroom": c.id });
          tr.appendChild(el("td", null, c.name)); tr.appendChild(el("td", null, c.school || ""));
          var ans = c.tally ? Object.keys(c.tally).map(function (k) { return (q.type === "truefalse" ? (k === "0" ? t("yes") : t("no")) : String.fromCharCode(65 + +k)) + ":" + c.tally[k]; }).join(" ")
            : (q.option_count ? [].concat(c.value).map(function (v) { return q.type === "truefalse" ? (v === 0 ? t("yes") : t("no")) : String.fromCharCode(65 + v); }).join(",") : String(c.value));
          tr.appendChild(el("td", null, ans));
          tr.appendChild(el("td", null, c.correct + "/" + c.judged));
          ct.appendChild(tr);
        });
        qbox.appendChild(ct);
      }
      if (qt) {
        var na = el("p", { "data-role": "not-answered" }, t("not_answered") + " (" + qt.not_answered.length + "): " +
          qt.not_answered.map(function (c) { return c.name; }).join("、"));
        qbox.appendChild(na);
      }
      if (q.answer !== undefined && q.explanation) { qbox.appendChild(el("p", null, q.explanation)); }
      box.appendChild(qbox);
    });
    tick();
    return box;
  }

  function renderSet() {
    var box = section(t("set") + (st.set.title ? " · " + st.set.title : ""));
    var table = el("table", { "data-role": "set-table" });
    st.set.questions.forEach(function (q) {
      var tr = el("tr", { "data-question": q.id });
      var cb = el("input", { type: "checkbox", "data-test-question": q.id, title: t("test_sel") });
      cb.checked = true;
      var td0 = el("td"); td0.appendChild(cb); tr.appendChild(td0);
      tr.appendChild(el("td", null, q.id)); tr.appendChild(el("td", null, t(q.type)));
      tr.appendChild(el("td", null, q.text));
      var push = el("button", { type: "button", "data-action": "push-question", "data-question": q.id }, t("push"));
      push.onclick = function () { send({ type: "push-question", question_id: q.id }); };
      var td = el("td"); td.appendChild(push); tr.appendChild(td);
      table.appendChild(tr);
    });
    box.appendChild(table);
    var row = el("div", { className: "row" });
    row.appendChild(el("label", null, t("duration")));
    var dur = el("input", { type: "number", min: "0.1", step: "0.5", value: "5", "data-role": "test-duration" });
    row.appendChild(dur);
    var open = el("button", { type: "button", "data-action": "open-test" }, t("open_test"));
    open.onclick = function () {
      var ids = Array.prototype.map.call(root.querySelectorAll("input[data-test-question]:checked"), function (c) { return c.getAttribute("data-test-question"); });
      send({ type: "open-test", duration: Math.max(2, Math.round(parseFloat(dur.value || "5") * 60)), question_ids: ids });
    };
    row.appendChild(open);
    var exp = el("button", { type: "button", className: "secondary", "data-action": "quiz-export" }, t("export"));
    exp.onclick = function () {
      request("GET", "set").then(function (s) {
        var blob = new Blob([JSON.stringify(s, null, 2)], { type: "application/json" });
        var a = el("a", { href: URL.createObjectURL(blob), download: "quiz-" + lesson + ".json" });
        document.body.appendChild(a); a.click(); a.remove();
      });
    };
    row.appendChild(exp);
    box.appendChild(row);
    var ta = el("textarea", { "data-role": "import-json", placeholder: '{"format": "classroom-quiz", "version": 1, "questions": [...]}' });
    var file = el("input", { type: "file", accept: "application/json,.json" });
    file.onchange = function () { if (file.files[0]) { file.files[0].text().then(function (txt) { ta.value = txt; }); } };
    var imp = el("button", { type: "button", className: "secondary", "data-action": "quiz-import" }, t("import"));
    imp.onclick = function () {
      request("PUT", "set", ta.value).then(function (s) { st.set = s; note(t("saved", { n: s.questions.length }), true); })
        .catch(function (e) { note(t("bad", { code: e.code, msg: e.message }), false); });
    };
    var r2 = el("div", { className: "row" }); r2.appendChild(file); r2.appendChild(imp);
    box.appendChild(ta); box.appendChild(r2);
    return box;
  }

  function renderAuthor() {
    var box = section(t("add"));
    var type = el("select", { "data-role": "new-type" });
    ["single", "multiple", "truefalse", "fill", "numeric"].forEach(function (k) { type.appendChild(el("option", { value: k }, t(k))); });
    var text = el("input", { type: "text", placeholder: t("text"), "data-role": "new-text", size: "40" });
    var opts = el("textarea", { placeholder: t("options"), "data-role": "new-options" });
    var ans = el("input", { type: "text", placeholder: t("answer"), "data-role": "new-answer" });
    var pts = el("input", { type: "number", value: "1", min: "0.5", step: "0.5", "data-role": "new-points" });
    var add = el("button", { type: "button", "data-action": "quiz-add" }, t("add"));
    add.onclick = function () {
      var options = opts.value.split("\n").map(function (x) { return x.trim(); }).filter(Boolean);
      var q = { type: type.value, text: text.value, points: parseFloat(pts.value || "1") };
      var a = parseAnswer(type.value, ans.value, options.length);
      if (type.value === "single" || type.value === "multiple") { q.options = options; q.answer = a; }
      else if (type.value === "numeric") { q.answer = a.value; q.tolerance = a.tolerance; }
      else { q.answer = a; }
      var used = {}; st.set.questions.forEach(function (x) { used[x.id] = 1; });
      var n = st.set.questions.length + 1; while (used["q" + n]) { n++; }
      q.id = "q" + n;
      saveSet({ format: "classroom-quiz", version: 1, title: st.set.title || "", questions: st.set.questions.concat([q]) });
    };
    [type, text, pts].forEach(function (x) { box.appendChild(x); });
    box.appendChild(opts);
    var row = el("div", { className: "row" }); row.appendChild(ans); row.appendChild(add); box.appendChild(row);
    box.appendChild(el("p", { className: "quiz-note" }, t("answer_help")));
    return box;
  }

  function tick() {
    var cd = root && root.querySelector("[data-role=countdown]");
    var r = st.round;
    if (!cd || !r) { return; }
    if (r.state === "closed") { cd.textContent = r.revealed_at ? t("revealed") : t("closed"); return; }
    if (r.closes_at) {
      var left = Math.max(0, Math.ceil(r.closes_at - now()));
      cd.textContent = t("left", { s: Math.floor(left / 60) + ":" + ("0" + (left % 60)).slice(-2) });
    } else { cd.textContent = ""; }
  }

  function onQuiz(msg) {
    if (msg.server_time) { st.offset = msg.server_time - Date.now() / 1000; }
    switch (msg.type) {
      case "quiz-question": case "quiz-test": st.round = msg.round; st.tally = null; st.note = null; break;
      case "quiz-closed": if (st.round && st.round.round_id === msg.round_id) { st.round.state = "closed"; st.round.closed_at = msg.closed_at; } break;
      case "quiz-reveal": if (st.round && st.round.round_id === msg.round_id) { st.round.questions = msg.questions; st.round.revealed_at = msg.at; } break;
      case "quiz-tally": st.tally = msg; break;
      case "quiz-state": st.round = msg.round; st.tally = msg.tally; break;
      case "error": note(t("bad", { code: msg.code, msg: msg.message }), false); return;
      default: return;
    }
    render();
  }

  function setup() {
    root = document.getElementById("quiz-teacher");
    if (!root || !C) { return; }
    loadCss();
    root.classList.add("quiz-panel");
    var Orig = C.Signal;
    function Hooked(options) {
      var opts = {}; for (var k in options) { if (Object.prototype.hasOwnProperty.call(options, k)) { opts[k] = options[k]; } }
      var w = opts.onWelcome, m = opts.onMessage;
      opts.onWelcome = function (msg) {
        try { if (msg.quiz) { st.offset = msg.quiz.server_time - Date.now() / 1000; st.round = msg.quiz.round; st.tally = msg.quiz.tally; render(); } } catch (e) { console.error(e); }
        if (w) { return w.apply(this, arguments); }
      };
      opts.onMessage = function (msg) {
        var quizError = msg.type === "error" && /^(quiz-|push-question|open-test|close-round|reveal)/.test(msg.ref || "");
        if (String(msg.type).indexOf("quiz-") === 0 || quizError) { onQuiz(msg); return; }
        if (m) { return m.apply(this, arguments); }
      };
      Orig.call(this, opts);
      st.signal = this;
    }
    Hooked.prototype = Orig.prototype;
    C.Signal = Hooked;
    render();
    loadSet();
    setInterval(tick, 500);
    window.teacherQuiz = st;
  }
  if (document.getElementById("quiz-teacher")) { setup(); } else { document.addEventListener("DOMContentLoaded", setup); }
})();
