/* /report/{lesson}: the printable learning report (学情报告), charts as inline SVG. */
(function () {
  "use strict";
  var C = window.Classroom;
  var en = C.lang === "en";
  var T = en ? {
    title: "Learning report", lesson: "Lesson", answers: "Answers", accuracy: "Accuracy", questions: "Questions",
    classrooms: "Classrooms", schools: "Schools", students: "Students", missed: "Most missed", times: "Answer time (s since the question opened)",
    q: "Question", type: "Type", resp: "Responses", right: "Right", name: "Name", school: "School", score: "Score",
    print: "Print", none: "No answers yet", p50: "median", scope_classroom: "(your classroom only)", scope_student: "(your answers only)",
    per_q: "Accuracy per question", options: "Options"
  } : {
    title: "学情报告", lesson: "课程", answers: "作答数", accuracy: "正确率", questions: "题目",
    classrooms: "课堂", schools: "学校", students: "学生", missed: "错误最多的题", times: "作答用时（秒，自出题起）",
    q: "题目", type: "题型", resp: "作答", right: "正确", name: "名称", school: "学校", score: "得分",
    print: "打印", none: "还没有作答", p50: "中位数", scope_classroom: "（仅本课堂）", scope_student: "（仅本人）",
    per_q: "各题正确率", options: "选项分布"
  };
  var SVGNS = "http://www.w3.org/2000/svg";
  var token = C.readToken();
  var lesson = C.lessonFromPath();
  var status = document.getElementById("status");
  var out = document.getElementById("report");
  document.documentElement.lang = en ? "en" : "zh-CN";
  document.title = T.title + " · " + lesson;
  document.getElementById("title").textContent = T.title + " · " + lesson;
  document.querySelector("[data-action=print]").textContent = T.print;

  function el(tag, text, attrs) {
    var n = document.createElement(tag);
    if (text !== undefined && text !== null) { n.textContent = String(text); }
    for (var k in (attrs || {})) { n.setAttribute(k, attrs[k]); }
    return n;
  }
  function svg(tag, attrs, text) {
    var n = document.createElementNS(SVGNS, tag);
    for (var k in (attrs || {})) { n.setAttribute(k, attrs[k]); }
    if (text !== undefined) { n.textContent = String(text); }
    return n;
  }
  function pct(x) { return x === null || x === undefined ? "—" : Math.round(x * 1000) / 10 + "%"; }
  function table(headers, rows, role) {
    var t = el("table", null, { "data-role": role });
    var tr = el("tr"); headers.forEach(function (h) { tr.appendChild(el("th", h)); }); t.appendChild(tr);
    rows.forEach(function (r) { var row = el("tr"); r.forEach(function (c) { row.appendChild(el("td", c)); }); t.appendChild(row); });
    return t;
  }
  /** Horizontal bar chart: items [{label, value (0..1 or count)}], max. */
  function bars(items, max, fmt, role) {
    var h = 22, w = 520, lw = 160;
    var s = svg("svg", { width: w, height: items.length * h + 10, viewBox: "0 0 " + w + " " + (items.length * h + 10), role: "img", "data-role": role });
    items.forEach(function (it, i) {
      var y = 5 + i * h;
      s.appendChild(svg("text", { x: 0, y: y + 15, "font-size": 12 }, it.label.length > 22 ? it.label.slice(0, 21) + "…" : it.label));
      var bw = max > 0 ? Math.max(0, (w - lw - 60) * (it.value || 0) / max) : 0;
      s.appendChild(svg("rect", { x: lw, y: y + 3, width: bw, height: h - 8, fill: it.color || "#1976d2" }));
      s.appendChild(svg("text", { x: lw + bw + 4, y: y + 15, "font-size": 12 }, fmt(it.value)));
    });
    return s;
  }

  function render(rep) {
    out.textContent = "";
    var scope = rep.scope === "classroom" ? T.scope_classroom : rep.scope === "student" ? T.scope_student : "";
    out.appendChild(el("p", T.lesson + ": " + rep.lesson + " " + scope + " · " + T.answers + ": " + rep.totals.answers +
      " · " + T.accuracy + ": " + pct(rep.totals.accuracy), { "data-role": "totals" }));
    if (!rep.totals.answers) { out.appendChild(el("p", T.none)); }
    var charts = el("div", null, { class: "charts" });
    out.appendChild(el("h2", T.per_q));
    charts.appendChild(bars(rep.questions.map(function (q) {
      return { label: q.question_id + " " + q.text, value: q.accuracy || 0, color: (q.accuracy || 0) < 0.6 ? "#e53935" : "#43a047" };
    }), 1, pct, "accuracy-chart"));
    out.appendChild(charts);
    out.appendChild(el("h2", T.times));
    var bk = rep.answer_times.buckets;
    var maxc = 0; bk.forEach(function (b) { maxc = Math.max(maxc, b.count); });
    out.appendChild(bars(bk.map(function (b) { return { label: b.from_s + (b.to_s === null ? "+" : "–" + b.to_s), value: b.count }; }),
      maxc, function (v) { return String(v); }, "time-chart"));
    out.appendChild(el("p", T.p50 + ": " + (rep.answer_times.p50_s === null ? "—" : rep.answer_times.p50_s + " s")));
    out.appendChild(el("h2", T.questions));
    out.appendChild(table([T.q, T.type, T.resp, T.right, T.accuracy, T.options], rep.questions.map(function (q) {
      return [q.question_id + " " + q.text, q.type, q.responses, q.correct + "/" + q.judged, pct(q.accuracy),
        q.option_counts ? q.option_counts.map(function (c, i) { return String.fromCharCode(65 + i) + ":" + c; }).join(" ") : ""];
    }), "questions"));
    if (rep.most_missed.length) {
      out.appendChild(el("h2", T.missed));
      out.appendChild(table([T.q, T.accuracy], rep.most_missed.map(function (q) { return [q.question_id + " " + q.text, pct(q.accuracy)]; }), "missed"));
    }
    [[T.classrooms, rep.classrooms, "classrooms"], [T.students, rep.students, "students"]].forEach(function (sec) {
      if (!sec[1].length) { return; }
      out.appendChild(el("h2", sec[0]));
      out.appendChild(table([T.name, T.school, T.answers, T.right, T.accuracy, T.score], sec[1].map(function (c) {
        return [c.name, c.school, c.answers, c.correct + "/" + c.judged, pct(c.accuracy), c.score + " / " + c.max_score];
      }), sec[2]));
    });
    if (rep.schools.length) {
      out.appendChild(el("h2", T.schools));
      out.appendChild(bars(rep.schools.map(function (s) { return { label: s.school || "—", value: s.accuracy || 0 }; }), 1, pct, "school-chart"));
      out.appendChild(table([T.school, T.answers, T.right, T.accuracy], rep.schools.map(function (s) {
        return [s.school || "—", s.answers, s.correct + "/" + s.judged, pct(s.accuracy)];
      }), "schools"));
    }
  }

  var base = "/api/lessons/" + encodeURIComponent(lesson) + "/quiz/report";
  function get(path) { return fetch(path, { headers: { Authorization: "Bearer " + token } }); }
  if (!token) { status.textContent = C.t("no_token"); return; }
  get(base).then(function (r) { return r.json().then(function (d) { if (!r.ok) { throw new Error(d.error ? d.error.code : r.status); } return d; }); })
    .then(function (rep) { render(rep); window.quizReport = rep; })
    .catch(function (e) { status.textContent = C.t("err_other", { code: e.message }); });
  document.querySelector("[data-action=download-csv]").onclick = function () {
    get(base + ".csv").then(function (r) { return r.blob(); }).then(function (b) {
      var a = el("a", null, { href: URL.createObjectURL(b), download: "report-" + lesson + ".csv" });
      document.body.appendChild(a); a.click(); a.remove();
    });
  };
  document.querySelector("[data-action=print]").onclick = function () { window.print(); };
})();
