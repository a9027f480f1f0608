// @ts-check
/* The statistics panel (应用统计): filters (date range, school, teacher, subject, cluster,
 * group by), a table of GET /api/stats's groups, two SVG charts (开课率 / 到课率 per group;
 * minutes per tier, stacked) and the JSON and CSV of the same query. Groups are schools,
 * teachers, subjects, clusters or days: never students (no ranking of pupils anywhere).
 */
import { el } from "./dom.js";
import { listOf, notAvailable } from "./admin-api.js";
import { barChart } from "./admin-chart.js";
import { control, form, heading, run, setChoices, table, unavailable } from "./admin-ui.js";
import { addDays, mondayOf, today } from "./admin-week.js";

/** @typedef {import("./admin-directory.js").Directory} Directory */
/** @typedef {import("./i18n.js").Translate} Translate */

const GROUPS = ["school", "teacher", "subject", "cluster", "day"];
const TIERS = [["high", "#1f5fae"], ["mid", "#4f8fd9"], ["low", "#9cc0ea"], ["audio", "#c77d12"]];

/** The first of `keys` that `row` has as a number. @param {any} row @param {string[]} keys */
function num(row, keys) {
  for (const k of keys) {
    const v = k.split(".").reduce((o, p) => (o && typeof o === "object" ? o[p] : undefined), row);
    if (typeof v === "number" && Number.isFinite(v)) {
      return v;
    }
  }
  return null;
}

/** A ratio from a rate field (0..1 or a percentage) or from its parts. */
function ratio(/** @type {any} */ row, /** @type {string[]} */ rates, /** @type {string} */ part, /** @type {string} */ whole) {
  const r = num(row, rates);
  if (r !== null) {
    return r > 1 ? r / 100 : r;
  }
  const a = num(row, [part]);
  const b = num(row, [whole]);
  return a !== null && b ? a / b : null;
}

/**
 * One group of the stats answer in the page's terms.
 * @param {any} row
 */
export function statRow(row) {
  /** @type {Record<string, number>} */
  const tiers = {};
  TIERS.forEach(([tier]) => {
    tiers[tier] = num(row, [`tier_minutes.${tier}`, `minutes_by_tier.${tier}`, `tiers.${tier}`,
      tier === "audio" ? "audio_only_minutes" : `minutes_${tier}`]) || 0;
  });
  return {
    key: String(row.key ?? row.group ?? row.id ?? ""),
    label: String(row.label ?? row.name ?? row.key ?? row.group ?? ""),
    scheduled: num(row, ["scheduled", "lessons_scheduled"]),
    held: num(row, ["held", "lessons_held"]),
    heldRate: ratio(row, ["held_rate", "rate_held", "kaike_rate"], "held", "scheduled"),
    onTime: num(row, ["on_time", "on_time_starts"]),
    onTimeRate: ratio(row, ["on_time_rate"], "on_time", "held"),
    minutesLive: num(row, ["minutes_live", "live_minutes"]),
    expected: num(row, ["classrooms_expected", "expected"]),
    joined: num(row, ["classrooms_joined", "joined"]),
    joinRate: ratio(row, ["attendance_rate", "joined_rate", "rate_joined", "daoke_rate"], "classrooms_joined", "classrooms_expected")
      ?? ratio(row, [], "joined", "expected"),
    minutesConnected: num(row, ["minutes_connected", "connected_minutes"]),
    practice: num(row, ["practice_rounds", "practice_participation"]),
    test: num(row, ["test_rounds", "test_participation"]),
    classroomAnswers: num(row, ["classroom_answers"]),
    studentAnswers: num(row, ["student_answers"]),
    tiers
  };
}

/** @param {number | null} v */
const pct = (v) => (v === null ? "—" : Math.round(v * 1000) / 10 + "%");
/** @param {number | null} v */
const n = (v) => (v === null ? "—" : String(Math.round(v * 10) / 10));

/**
 * Build the statistics panel into `panel`.
 * @param {HTMLElement} panel @param {Directory} dir @param {Translate} t
 * @returns {{refresh: () => Promise<unknown>, state: () => Record<string, any>}}
 */
export function mountStats(panel, dir, t) {
  const api = dir.api;
  /** @type {ReturnType<typeof statRow>[]} */
  let rows = [];
  /** @type {ReturnType<typeof statRow> | null} the totals row ("" key) */
  let totals = null;
  const out = el("div", { className: "stats-out", "data-stats": "" });
  const csvButton = el("button", { type: "button", "data-action": "stats-csv" }, t("download_csv"));
  const jsonButton = el("button", { type: "button", "data-action": "stats-json" }, t("download_json"));
  const all = (/** @type {string} */ key) => ({ value: "", label: t(key) });
  const filters = form({
    title: t("stats_filters"), action: "stats-query", submit: t("stats_query"), extra: [csvButton, jsonButton],
    fields: [
      { name: "from", label: t("field_from"), type: "date" },
      { name: "to", label: t("field_to"), type: "date" },
      { name: "school", label: t("field_school"), type: "select" },
      { name: "teacher", label: t("field_teacher"), type: "select" },
      { name: "subject", label: t("field_subject"), placeholder: t("all_subjects") },
      { name: "cluster", label: t("field_cluster"), type: "select" },
      { name: "group_by", label: t("field_group_by"), type: "select",
        choices: GROUPS.map((g) => ({ value: g, label: t("group_" + g) })) }
    ],
    onSubmit: () => load()
  });
  filters.classList.add("filters");
  const monday = mondayOf(today());
  control(filters, "from").value = monday;
  control(filters, "to").value = addDays(monday, 6);

  const query = () => {
    const q = new URLSearchParams();
    ["from", "to", "school", "teacher", "subject", "cluster", "group_by"].forEach((k) => {
      const v = control(filters, k).value.trim();
      if (v) {
        q.set(k, v);
      }
    });
    return q;
  };
  csvButton.onclick = () => run(filters, () => api.save("/api/stats.csv?" + query(), "stats.csv"));
  jsonButton.onclick = () => run(filters, () => api.save("/api/stats?" + query(), "stats.json"));

  const render = () => {
    out.textContent = "";
    const groupLabel = t("group_" + control(filters, "group_by").value);
    const box = el("div", { className: "table-box" });
    out.appendChild(box);
    box.appendChild(table([
      { head: groupLabel, cell: (r) => r.label || r.key },
      { head: t("col_scheduled"), cell: (r) => n(r.scheduled) },
      { head: t("col_held"), cell: (r) => n(r.held) },
      { head: t("col_held_rate"), cell: (r) => pct(r.heldRate) },
      { head: t("col_on_time"), cell: (r) => n(r.onTime) + (r.onTimeRate === null ? "" : " (" + pct(r.onTimeRate) + ")") },
      { head: t("col_minutes_live"), cell: (r) => n(r.minutesLive) },
      { head: t("col_expected"), cell: (r) => n(r.expected) },
      { head: t("col_joined"), cell: (r) => n(r.joined) },
      { head: t("col_join_rate"), cell: (r) => pct(r.joinRate) },
      { head: t("col_minutes_connected"), cell: (r) => n(r.minutesConnected) },
      { head: t("col_practice"), cell: (r) => n(r.practice) },
      { head: t("col_test"), cell: (r) => n(r.test) },
      { head: t("col_answers"), cell: (r) => n(r.classroomAnswers) + " / " + n(r.studentAnswers) }
    ], totals ? [...rows, totals] : rows, t("stats_empty"), (r) => ({ "data-group": r.key })));
    if (!rows.length) {
      return;
    }
    const charts = el("div", { className: "charts" });
    /** @param {string} caption @param {SVGElement} chart */
    const figure = (caption, chart) => {
      const fig = el("figure");
      fig.append(el("figcaption", null, caption), chart);
      charts.appendChild(fig);
    };
    figure(t("chart_rates"), barChart({
      title: t("chart_rates"), chart: "rates", max: 1, format: (v) => Math.round(v * 100) + "%",
      series: [{ key: "held", name: t("col_held_rate"), color: "#1f5fae" }, { key: "joined", name: t("col_join_rate"), color: "#2e8b57" }],
      groups: rows.map((r) => ({ label: r.label || r.key, values: { held: r.heldRate || 0, joined: r.joinRate || 0 } }))
    }));
    figure(t("chart_tiers"), barChart({
      title: t("chart_tiers"), chart: "tiers", stacked: true, format: (v) => String(Math.round(v)),
      series: TIERS.map(([key, color]) => ({ key, color, name: t("tier_" + key) })),
      groups: rows.map((r) => ({ label: r.label || r.key, values: r.tiers }))
    }));
    out.appendChild(charts);
  };

  /** A group's name: the directory's for schools, teachers and clusters; else its key. @param {string} key */
  const nameOf = (key) => {
    const by = control(filters, "group_by").value;
    if (by === "school") {
      return dir.schoolName(key);
    }
    if (by === "teacher") {
      return dir.teacherName(key);
    }
    const cluster = by === "cluster" ? dir.clusters.find((c) => c.id === key) : null;
    return cluster ? cluster.name || key : key;
  };
  const load = () => api.get("/api/stats?" + query()).then((body) => {
    rows = listOf(body, "groups").map(statRow);
    if (!rows.length) {
      rows = listOf(body, "rows").map(statRow);
    }
    rows.forEach((r) => {
      if (!r.label || r.label === r.key) {
        r.label = nameOf(r.key);
      }
    });
    totals = body && body.totals ? Object.assign(statRow(body.totals), { key: "", label: t("totals") }) : null;
    render();
  });
  const refreshChoices = () => {
    setChoices(control(filters, "school"), [all("all_schools"), ...dir.schools.map((s) => ({ value: s.id, label: s.name }))]);
    setChoices(control(filters, "teacher"), [all("all_teachers"), ...dir.teachersOf().map((x) => ({ value: x.id, label: x.name }))]);
    setChoices(control(filters, "cluster"), [all("all_clusters"), ...dir.clusters.map((c) => ({ value: c.id, label: c.name }))]);
  };
  dir.onChange(refreshChoices);
  const section = el("div", { className: "entity wide" });
  section.append(heading(t("tab_stats")), el("p", { className: "note" }, t("stats_privacy")), filters, out);

  return {
    refresh: () => {
      refreshChoices();
      return load().then(() => {
        panel.textContent = "";
        panel.append(section);
      }, (err) => {
        unavailable(panel, notAvailable(err) ? t("not_available", { what: t("tab_stats") }) : t("load_failed", { error: err.message }));
      });
    },
    state: () => ({
      groups: rows.length,
      bars: panel.querySelectorAll('[data-chart="rates"] [data-bar]').length
    })
  };
}
