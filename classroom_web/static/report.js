// @ts-check
/* /report/{lesson}: the printable learning report (学情报告), charts as inline SVG. */
import { $, download, el } from "./dom.js";
import { htmlLang, t as liveText, translator } from "./i18n.js";
import { apiJson, lessonFromPath, readToken } from "./protocol.js";
import { REPORT } from "./strings.js";

const t = translator(REPORT);
const SVGNS = "http://www.w3.org/2000/svg";

/**
 * @param {string} tag @param {Record<string, string | number>} [attrs] @param {string | number} [text]
 * @returns {SVGElement}
 */
function svg(tag, attrs, text) {
  const n = /** @type {SVGElement} */ (document.createElementNS(SVGNS, tag));
  for (const [k, v] of Object.entries(attrs || {})) {
    n.setAttribute(k, String(v));
  }
  if (text !== undefined) {
    n.textContent = String(text);
  }
  return n;
}

/** @param {number | null | undefined} x */
function pct(x) {
  return x === null || x === undefined ? "—" : Math.round(x * 1000) / 10 + "%";
}

/** @param {string[]} headers @param {(string | number)[][]} rows @param {string} role */
function table(headers, rows, role) {
  const tab = el("table", { "data-role": role });
  const tr = el("tr");
  headers.forEach((h) => tr.appendChild(el("th", null, h)));
  tab.appendChild(tr);
  rows.forEach((r) => {
    const row = el("tr");
    r.forEach((c) => row.appendChild(el("td", null, c)));
    tab.appendChild(row);
  });
  return tab;
}

/**
 * Horizontal bar chart.
 * @param {{label: string, value: number, color?: string}[]} items
 * @param {number} max @param {(v: number) => string} fmt @param {string} role
 */
function bars(items, max, fmt, role) {
  const h = 22;
  const w = 520;
  const lw = 160;
  const s = svg("svg", { width: w, height: items.length * h + 10, viewBox: "0 0 " + w + " " + (items.length * h + 10), role: "img", "data-role": role });
  items.forEach((it, i) => {
    const y = 5 + i * h;
    s.appendChild(svg("text", { x: 0, y: y + 15, "font-size": 12 }, it.label.length > 22 ? it.label.slice(0, 21) + "…" : it.label));
    const bw = max > 0 ? Math.max(0, (w - lw - 60) * (it.value || 0) / max) : 0;
    s.appendChild(svg("rect", { x: lw, y: y + 3, width: bw, height: h - 8, fill: it.color || "#1976d2" }));
    s.appendChild(svg("text", { x: lw + bw + 4, y: y + 15, "font-size": 12 }, fmt(it.value)));
  });
  return s;
}

/** @param {HTMLElement} out @param {any} rep the report of /api/lessons/{lesson}/quiz/report */
function render(out, rep) {
  out.textContent = "";
  const scope = rep.scope === "classroom" ? t("scope_classroom") : rep.scope === "student" ? t("scope_student") : "";
  out.appendChild(el("p", { "data-role": "totals" }, t("lesson") + ": " + rep.lesson + " " + scope + " · " +
    t("answers") + ": " + rep.totals.answers + " · " + t("accuracy") + ": " + pct(rep.totals.accuracy)));
  if (!rep.totals.answers) {
    out.appendChild(el("p", null, t("none")));
  }
  const charts = el("div", { class: "charts" });
  out.appendChild(el("h2", null, t("per_q")));
  charts.appendChild(bars(rep.questions.map((/** @type {any} */ q) => ({
    label: q.question_id + " " + q.text, value: q.accuracy || 0, color: (q.accuracy || 0) < 0.6 ? "#e53935" : "#43a047"
  })), 1, pct, "accuracy-chart"));
  out.appendChild(charts);
  out.appendChild(el("h2", null, t("times")));
  /** @type {{from_s: number, to_s: number | null, count: number}[]} */
  const bk = rep.answer_times.buckets;
  const maxc = Math.max(0, ...bk.map((b) => b.count));
  out.appendChild(bars(bk.map((b) => ({ label: b.from_s + (b.to_s === null ? "+" : "–" + b.to_s), value: b.count })),
    maxc, (v) => String(v), "time-chart"));
  out.appendChild(el("p", null, t("p50") + ": " + (rep.answer_times.p50_s === null ? "—" : rep.answer_times.p50_s + " s")));
  out.appendChild(el("h2", null, t("questions")));
  out.appendChild(table([t("q"), t("type"), t("resp"), t("right"), t("accuracy"), t("options")],
    rep.questions.map((/** @type {any} */ q) => [q.question_id + " " + q.text, q.type, q.responses,
      q.correct + "/" + q.judged, pct(q.accuracy),
      q.option_counts ? q.option_counts.map((/** @type {number} */ c, /** @type {number} */ i) =>
        String.fromCharCode(65 + i) + ":" + c).join(" ") : ""]), "questions"));
  if (rep.most_missed.length) {
    out.appendChild(el("h2", null, t("missed")));
    out.appendChild(table([t("q"), t("accuracy")], rep.most_missed.map((/** @type {any} */ q) =>
      [q.question_id + " " + q.text, pct(q.accuracy)]), "missed"));
  }
  /** @type {[string, any[], string][]} */
  const people = [[t("classrooms"), rep.classrooms, "classrooms"], [t("students"), rep.students, "students"]];
  people.forEach(([title, list, role]) => {
    if (!list.length) {
      return;
    }
    out.appendChild(el("h2", null, title));
    out.appendChild(table([t("name"), t("school"), t("answers"), t("right"), t("accuracy"), t("score")], list.map((c) =>
      [c.name, c.school, c.answers, c.correct + "/" + c.judged, pct(c.accuracy), c.score + " / " + c.max_score]), role));
  });
  if (rep.schools.length) {
    out.appendChild(el("h2", null, t("schools")));
    out.appendChild(bars(rep.schools.map((/** @type {any} */ s) => ({ label: s.school || "—", value: s.accuracy || 0 })),
      1, pct, "school-chart"));
    out.appendChild(table([t("school"), t("answers"), t("right"), t("accuracy")], rep.schools.map((/** @type {any} */ s) =>
      [s.school || "—", s.answers, s.correct + "/" + s.judged, pct(s.accuracy)]), "schools"));
  }
}

function main() {
  const token = readToken();
  const lesson = lessonFromPath();
  const status = $("#status");
  const out = $("#report");
  document.documentElement.lang = htmlLang;
  document.title = t("title") + " · " + lesson;
  $("#title").textContent = t("title") + " · " + lesson;
  const printButton = $("[data-action=print]", HTMLButtonElement);
  printButton.textContent = t("print");
  const base = "/api/lessons/" + encodeURIComponent(lesson) + "/quiz/report";
  if (!token) {
    status.textContent = liveText("no_token");
    return;
  }
  apiJson(base, token)
    .then((rep) => {
      render(out, rep);
      window.quizReport = rep;
    })
    .catch((e) => {
      status.textContent = liveText("err_other", { code: e.code || e.message });
    });
  $("[data-action=download-csv]", HTMLButtonElement).onclick = () => {
    fetch(base + ".csv", { headers: { Authorization: "Bearer " + token } })
      .then((r) => r.blob())
      .then((b) => download(b, "report-" + lesson + ".csv"));
  };
  printButton.onclick = () => window.print();
}

main();
