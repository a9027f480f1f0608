/* The library (共享课堂): recordings the token may see, with search and filters.
   The token travels in the URL fragment (#token=...) and goes only to /api as a bearer. */
(function () {
  "use strict";
  var EN = document.documentElement.lang === "en";
  var TEXT = {
    library_title: ["共享课堂 · 课程回放", "Shared classroom · Lesson library"],
    search: ["搜索课程、老师、章节", "Search lessons, teachers, chapters"],
    all_subjects: ["全部学科", "All subjects"], all_grades: ["全部年级", "All grades"],
    all_schools: ["全部学校", "All schools"], search_button: ["搜索", "Search"],
    loading: ["正在加载…", "Loading…"], empty: ["没有找到课程回放", "No recordings found"],
    no_token: ["链接缺少凭证（#token=…）", "The link has no token (#token=…)"],
    failed: ["加载失败：", "Could not load: "], packaging: ["正在生成回放…", "Preparing replay…"],
    recording: ["正在录制", "Recording"], failed_state: ["录制失败", "Recording failed"]
  };
  function t(key) { var v = TEXT[key]; return v ? v[EN ? 1 : 0] : key; }
  function applyI18n() {
    document.querySelectorAll("[data-i18n]").forEach(function (el) {
      el.textContent = t(el.getAttribute("data-i18n"));
    });
    document.querySelectorAll("[data-i18n-placeholder]").forEach(function (el) {
      el.placeholder = t(el.getAttribute("data-i18n-placeholder"));
    });
  }
  function token() {
    var m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function duration(s) {
    s = Math.round(s || 0);
    var m = Math.floor(s / 60), h = Math.floor(m / 60);
    return (h ? h + ":" + String(m % 60).padStart(2, "0") : m) + ":" + String(s % 60).padStart(2, "0");
  }
  var seen = { subject: {}, grade: {}, school: {} };
  function remember(rec) {
    ["subject", "grade"].forEach(function (k) { if (rec[k]) seen[k][rec[k]] = 1; });
    (rec.schools || []).forEach(function (s) { seen.school[s] = 1; });
  }
  function fillSelect(id) {
    var sel = document.getElementById(id), keep = sel.value;
    Object.keys(seen[id]).sort().forEach(function (v) {
      if (!sel.querySelector('option[value="' + CSS.escape(v) + '"]')) {
        var o = document.createElement("option"); o.value = v; o.textContent = v; sel.appendChild(o);
      }
    });
    sel.value = keep;
  }
  function card(rec) {
    var li = document.createElement("li"); li.className = "card"; li.dataset.recording = rec.id;
    var a = document.createElement(rec.replay_url ? "a" : "div");
    if (rec.replay_url) { a.href = rec.replay_url + (EN ? "&lang=en" : ""); a.dataset.action = "open-replay"; }
    var img;
    if (rec.poster_url) { img = document.createElement("img"); img.src = rec.poster_url; img.alt = ""; img.loading = "lazy"; }
    else { img = document.createElement("div"); img.className = "noposter"; }
    a.appendChild(img);
    var body = document.createElement("div"); body.className = "body";
    var title = document.createElement("div"); title.className = "title";
    title.textContent = rec.title || rec.lesson;
    var sub = document.createElement("div"); sub.className = "sub";
    sub.textContent = [rec.teacher, rec.school, rec.subject, rec.grade, rec.date, duration(rec.duration)]
      .filter(Boolean).join(" · ");
    body.appendChild(title); body.appendChild(sub);
    if (rec.state !== "ready") {
      var st = document.createElement("div"); st.className = "state";
      st.textContent = t(rec.state === "failed" ? "failed_state" : rec.state === "recording" ? "recording" : "packaging");
      body.appendChild(st);
    }
    a.appendChild(body); li.appendChild(a);
    return li;
  }
  function load() {
    var status = document.getElementById("status"), list = document.getElementById("list");
    var tok = token();
    if (!tok) { status.textContent = t("no_token"); return; }
    var params = new URLSearchParams();
    ["q", "subject", "grade", "school"].forEach(function (k) {
      var v = document.getElementById(k).value.trim(); if (v) params.set(k, v);
    });
    status.textContent = t("loading");
    fetch("/api/recordings?" + params, { headers: { Authorization: "Bearer " + tok } })
      .then(function (r) { return r.json().then(function (b) { if (!r.ok) throw new Error(b.error ? b.error.message : r.status); return b; }); })
      .then(function (body) {
        list.textContent = "";
        body.recordings.forEach(function (rec) { remember(rec); list.appendChild(card(rec)); });
        ["subject", "grade", "school"].forEach(fillSelect);
        status.textContent = body.recordings.length ? "" : t("empty");
      })
      .catch(function (e) { status.textContent = t("failed") + e.message; });
  }
  applyI18n();
  document.getElementById("filters").addEventListener("submit", function (e) { e.preventDefault(); load(); });
  ["subject", "grade", "school"].forEach(function (id) { document.getElementById(id).addEventListener("change", load); });
  window.libraryState = function () {
    return { count: document.querySelectorAll("#list .card").length,
             status: document.getElementById("status").textContent };
  };
  load();
})();
