// @ts-check
/* /report/{lesson}: the printable learning report (学情报告), charts as inline SVG.
 *
 * Figures come from the server (signaling/quiz/report.py); this page only shows them:
 * unanswered counts as unanswered (and against the score), every expected classroom and
 * student is listed (by school and name, never ranked by score), each question both over
 * those who answered and over everyone expected, a question nobody answered is shown as
 * such (not as 0 %). JSON and CSV as links (blob: URLs: the token stays in the fragment
 * and the Authorization header, never in a URL), print stylesheet in report.css.
 */
import { $, el } from "./dom.js";
import { htmlLang, lang, t as liveText, translator } from "./i18n.js";
import { apiJson, lessonFromPath, readToken } from "./protocol.js";
import { REPORT } from "./strings.js";

const t = translator(REPORT);
const SVGNS = "http://www.w3.org/2000/svg";
const TYPES = new Set(["single", "multiple", "truefalse", "fill", "numeric"]);

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
export function pct(x) {
  return x === null || x === undefined ? "—" : Math.round(x * 1000) / 10 + "%";
}

/** The question type's name in the page's language ("单选题", "Single choice"). @param {string} type */
export function typeName(type) {
  return TYPES.has(type) ? t("type_" + type) : type;
}

/** @param {number} a @param {number} b */
function frac(a, b) {
  return a + "/" + b;
}

/**
 * @param {string[]} headers @param {(string | number)[][]} rows @param {string} role
 * @param {(row: number) => Record<string, string>} [rowAttrs]
 */
function table(headers, rows, role, rowAttrs) {
  const tab = el("table", { "data-role": role });
  const tr = el("tr");
  headers.forEach((h) => tr.appendChild(el("th", { scope: "col" }, h)));
  tab.appendChild(tr);
  rows.forEach((r, i) => {
    const row = el("tr", rowAttrs ? rowAttrs(i) : null);
    r.forEach((c) => row.appendChild(el("td", typeof c === "number" ? { class: "num" } : null, c)));
    tab.appendChild(row);
  });
  return tab;
}

/**
 * Horizontal bars; an item whose value is null is drawn with no bar and `empty` as its text.
 * `second`: a lighter bar below (e.g. accuracy over everyone expected).
 * @param {{label: string, value: number | null, second?: number | null, color?: string, empty?: string}[]} items
 * @param {number} max @param {(v: number) => string} fmt @param {string} role
 */
function bars(items, max, fmt, role) {
  const h = 26;
  const w = 560;
  const lw = 180;
  const height = items.length * h + 10;
  const s = svg("svg", { width: w, height, viewBox: "0 0 " + w + " " + height, role: "img", "data-role": role });
  const scale = (/** @type {number} */ v) => (max > 0 ? Math.max(0, (w - lw - 80) * v / max) : 0);
  items.forEach((it, i) => {
    const y = 5 + i * h;
    const g = svg("g", { "data-value": it.value === null ? "none" : String(it.value) });
    g.appendChild(svg("text", { x: 0, y: y + 16, "font-size": 12 }, it.label.length > 24 ? it.label.slice(0, 23) + "…" : it.label));
    if (it.value === null) {
      g.appendChild(svg("text", { x: lw, y: y + 16, "font-size": 12, "font-style": "italic", fill: "#555" }, it.empty || "—"));
    } else {
      const bw = scale(it.value);
      g.appendChild(svg("rect", { x: lw, y: y + 3, width: bw, height: 11, fill: it.color || "#1d4ed8" }));
      if (it.second !== undefined && it.second !== null) {
        g.appendChild(svg("rect", { x: lw, y: y + 15, width: scale(it.second), height: 6, fill: "#93a4c3" }));
      }
      const text = fmt(it.value) + (it.second !== undefined && it.second !== null ? " / " + fmt(it.second) : "");
      g.appendChild(svg("text", { x: lw + bw + 4, y: y + 14, "font-size": 12 }, text));
    }
    s.appendChild(g);
  });
  return s;
}

/** The lesson's date as the report's language writes it. @param {any} info */
function lessonDate(info) {
  const when = info.started_at || null;
  if (!when && !info.date) {
    return "";
  }
  if (!when) {
    return info.date;
  }
  return new Date(when * 1000).toLocaleDateString(lang === "en" ? "en-GB" : "zh-CN",
    { year: "numeric", month: "long", day: "numeric" });
}

/** Title and the line under it: lesson title (the id only without one), date, teacher, school. @param {any} rep */
function renderTitle(rep) {
  const info = rep.lesson_info || { id: rep.lesson };
  const name = info.title || info.id || rep.lesson;
  const title = t("title") + " · " + name;
  document.title = title;
  $("#title").textContent = title;
  const meta = $("#meta");
  meta.textContent = "";
  /** @type {[string, string, string][]} */
  const parts = [["date", t("date"), lessonDate(info)], ["teacher", t("teacher"), info.teacher || ""],
    ["school", t("school"), info.school || ""]];
  parts.forEach(([role, label, value]) => {
    if (value) {
      meta.appendChild(el("span", { "data-role": role }, label + ": " + value));
    }
  });
}

/** @param {HTMLElement} out @param {any} rep the report of /api/lessons/{lesson}/quiz/report */
function render(out, rep) {
  out.textContent = "";
  renderTitle(rep);
  const tot = rep.totals;
  const scope = rep.scope === "classroom" ? t("scope_classroom") : rep.scope === "student" ? t("scope_student") : "";
  out.appendChild(el("p", { "data-role": "totals", class: "totals" }, [
    t("questions") + ": " + tot.questions + (scope ? " " + scope : ""),
    t("answers") + ": " + frac(tot.answers, tot.expected_answers === undefined ? tot.answers : tot.expected_answers),
    t("unanswered") + ": " + (tot.unanswered || 0),
    t("acc_answered") + ": " + pct(tot.accuracy),
    t("acc_all") + ": " + pct(tot.accuracy_all)
  ].join(" · ")));
  if (!tot.answers) {
    out.appendChild(el("p", null, t("none")));
  }
  const notAnswered = t("not_answered_q");
  out.appendChild(el("h2", null, t("per_q")));
  out.appendChild(el("p", { class: "legend" }, t("legend")));
  const charts = el("div", { class: "charts" });
  charts.appendChild(bars(rep.questions.map((/** @type {any} */ q) => ({
    label: q.question_id + " " + q.text,
    value: q.responses ? q.accuracy : null,
    second: q.responses ? q.accuracy_all : null,
    color: (q.accuracy || 0) < 0.6 ? "#b91c1c" : "#15803d",
    empty: notAnswered
  })), 1, pct, "accuracy-chart"));
  out.appendChild(charts);

  out.appendChild(el("h2", null, t("questions")));
  out.appendChild(table(
    [t("q"), t("type"), t("answered"), t("unanswered"), t("right"), t("acc_answered"), t("acc_all"), t("options")],
    rep.questions.map((/** @type {any} */ q) => [
      q.question_id + " " + q.text, typeName(q.type),
      frac(q.responses, q.expected === undefined ? q.responses : q.expected),
      q.unanswered === undefined ? 0 : q.unanswered,
      q.responses ? frac(q.correct, q.judged) : "—",
      q.responses ? pct(q.accuracy) : notAnswered,
      q.responses ? pct(q.accuracy_all) : notAnswered,
      q.option_counts ? q.option_counts.map((/** @type {number} */ c, /** @type {number} */ i) =>
        String.fromCharCode(65 + i) + ":" + c).join(" ") : ""]),
    "questions",
    (i) => ({ "data-question": rep.questions[i].question_id,
              "data-unanswered": rep.questions[i].responses ? "false" : "true" })));
  const missingRooms = rep.questions.filter((/** @type {any} */ q) => (q.unanswered_classrooms || []).length);
  if (missingRooms.length) {
    out.appendChild(el("h2", null, t("unanswered_rooms")));
    out.appendChild(table([t("q"), t("unanswered_rooms")], missingRooms.map((/** @type {any} */ q) =>
      [q.question_id + " " + q.text, q.unanswered_classrooms.join("、")]), "unanswered-rooms"));
  }
  if (rep.most_missed.length) {
    out.appendChild(el("h2", null, t("missed")));
    out.appendChild(table([t("q"), t("acc_answered")], rep.most_missed.map((/** @type {any} */ q) =>
      [q.question_id + " " + q.text, pct(q.accuracy)]), "missed"));
  }
  out.appendChild(el("h2", null, t("times")));
  /** @type {{from_s: number, to_s: number | null, count: number}[]} */
  const bk = rep.answer_times.buckets;
  const maxc = Math.max(0, ...bk.map((b) => b.count));
  out.appendChild(bars(bk.map((b) => ({ label: b.from_s + (b.to_s === null ? "+" : "–" + b.to_s), value: b.count })),
    maxc, (v) => String(v), "time-chart"));
  out.appendChild(el("p", null, t("p50") + ": " + (rep.answer_times.p50_s === null ? "—" : rep.answer_times.p50_s + " s")));

  // by school and name, as the server sorts them: no ranking of named pupils
  /** @type {[string, any[], string][]} */
  const people = [[t("classrooms"), rep.classrooms, "classrooms"], [t("students"), rep.students, "students"]];
  people.forEach(([title, list, role]) => {
    if (!list.length) {
      return;
    }
    out.appendChild(el("h2", null, title));
    out.appendChild(table(
      [t("name"), t("school"), t("answered"), t("unanswered"), t("acc_answered"), t("score"), t("score_ratio")],
      list.map((p) => {
        const questions = p.questions === undefined ? p.answers : p.questions;
        return [p.name, p.school, frac(p.answers, questions), p.unanswered || 0,
          p.answers ? pct(p.accuracy) : "—", p.score + " / " + p.max_score, pct(p.score_ratio)];
      }), role, (i) => ({ "data-id": list[i].id })));
  });
  if (rep.schools.length) {
    out.appendChild(el("h2", null, t("schools")));
    out.appendChild(bars(rep.schools.map((/** @type {any} */ s) => ({
      label: s.school || "—", value: s.answers ? s.accuracy : null, second: s.answers ? s.accuracy_all : null,
      empty: notAnswered
    })), 1, pct, "school-chart"));
    out.appendChild(table([t("school"), t("answered"), t("unanswered"), t("right"), t("acc_answered"), t("acc_all")],
      rep.schools.map((/** @type {any} */ s) => [s.school || "—", s.answers, s.unanswered || 0,
        frac(s.correct, s.judged), pct(s.accuracy), pct(s.accuracy_all)]), "schools"));
  }
}

/** Point a link at a blob (a download named `name`). @param {string} id @param {Blob} blob @param {string} name */
function linkTo(id, blob, name) {
  const a = /** @type {HTMLAnchorElement} */ ($("#" + id));
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.hidden = false;
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
  printButton.textContent = t("print_btn");
  $("#json-link").textContent = t("json");
  $("#csv-link").textContent = t("csv");
  printButton.onclick = () => window.print();
  const base = "/api/lessons/" + encodeURIComponent(lesson) + "/quiz/report";
  if (!token) {
    status.textContent = liveText("no_token");
    return;
  }
  apiJson(base, token)
    .then((rep) => {
      render(out, rep);
      window.quizReport = rep;
      linkTo("json-link", new Blob([JSON.stringify(rep, null, 2)], { type: "application/json" }),
        "report-" + lesson + ".json");
    })
    .catch((e) => {
      status.textContent = liveText("err_other", { code: e.code || e.message });
    });
  fetch(base + ".csv", { headers: { Authorization: "Bearer " + token } })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(String(r.status)))))
    .then((b) => linkTo("csv-link", b, "report-" + lesson + ".csv"))
    .catch(() => { /* the JSON's error is the one shown */ });
}

main();
