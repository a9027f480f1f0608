// @ts-check
/* The timetable panel (课表): the week of a school or a cluster as a grid (days x hours) with
 * the conflicts the API reports marked; a slot created from a grid cell (a 409 names the other
 * lesson); terms; CSV import (dry run first, per-row errors as a table, nothing imported
 * unless the whole file is clean) and export.
 */
import { el } from "./dom.js";
import { lang } from "./i18n.js";
import { listOf, notAvailable } from "./admin-api.js";
import { busy, checked, control, form, heading, run, setChecks, setChoices, table, unavailable } from "./admin-ui.js";
import { words } from "./admin-directory.js";
import { addDays, hhmm, minutes, mondayOf, today, weekDates, weekday } from "./admin-week.js";

/** @typedef {import("./admin-directory.js").Directory} Directory */
/** @typedef {import("./i18n.js").Translate} Translate */

const FIRST_HOUR = 7;
const LAST_HOUR = 18;

/**
 * Every string inside a value (the ids a conflict entry names, whatever its shape).
 * @param {unknown} value @param {Set<string>} into
 */
function strings(value, into) {
  if (typeof value === "string") {
    into.add(value);
  } else if (Array.isArray(value)) {
    value.forEach((v) => strings(v, into));
  } else if (value && typeof value === "object") {
    Object.values(value).forEach((v) => strings(v, into));
  }
  return into;
}

/**
 * A slot in words: subject, grade, teacher, when (for a conflict's "other lesson").
 * @param {any} slot @param {Directory} dir @param {Translate} t
 */
export function slotText(slot, dir, t) {
  if (!slot || typeof slot !== "object") {
    return String(slot || "");
  }
  const when = slot.date ? slot.date : slot.weekday !== null && slot.weekday !== undefined ? t("weekday_" + slot.weekday) : "";
  return [slot.title || slot.subject, slot.grade, slot.teacher_id ? dir.teacherName(slot.teacher_id) : "",
    when, slot.starts && slot.ends ? slot.starts + "–" + slot.ends : "", slot.id ? "(" + slot.id + ")" : ""]
    .filter(Boolean).join(" ");
}

/**
 * What a refused slot's error says: its message, and the other lesson it conflicts with.
 * @param {any} err @param {Directory} dir @param {Translate} t
 */
function slotError(err, dir, t) {
  const other = err && err.detail && err.detail.other;
  if (err.status === 409 && other) {
    return t("conflict_with", { message: err.message, other: slotText(other, dir, t) });
  }
  return err.message || String(err);
}

/**
 * Build the timetable panel into `panel`.
 * @param {HTMLElement} panel @param {Directory} dir @param {Translate} t
 * @returns {{refresh: () => Promise<unknown>, state: () => Record<string, any>}}
 */
export function mountTimetable(panel, dir, t) {
  const api = dir.api;
  /** @type {{slots: any[], occurrences: any[], conflicts: any[]}} */
  let week = { slots: [], occurrences: [], conflicts: [] };
  /** @type {any[]} */
  let terms = [];
  let monday = mondayOf(today());

  // ---- controls: scope and week ----------------------------------------------------------
  const scope = el("select", { id: "tt-scope", "data-action": "pick-scope" });
  const weekInput = el("input", { id: "tt-week", type: "date", "data-action": "pick-week" });
  const prev = el("button", { type: "button", "data-action": "prev-week" }, t("prev_week"));
  const next = el("button", { type: "button", "data-action": "next-week" }, t("next_week"));
  const exportButton = el("button", { type: "button", "data-action": "export-csv" }, t("export_csv"));
  const controls = el("div", { className: "picker" });
  controls.append(el("label", { for: "tt-scope", className: "inline" }, t("scope")), scope,
    el("label", { for: "tt-week", className: "inline" }, t("week_of")), weekInput, prev, next, exportButton);
  const gridBox = el("div", { className: "week-box", "data-week": "" });
  const conflictBox = el("div", { className: "conflicts" });
  const gridError = el("p", { className: "form-error", role: "alert", "data-error": "timetable" });

  /** @returns {{school?: string, cluster?: string}} */
  const scopeQuery = () => {
    const [kind, id] = scope.value.split(":");
    return kind === "cluster" ? { cluster: id } : id ? { school: id } : {};
  };
  /** The schools of the chosen scope. */
  const scopeSchools = () => {
    const q = scopeQuery();
    return q.cluster ? dir.clusterSchools(q.cluster) : q.school ? [q.school] : dir.schools.map((s) => s.id);
  };

  // ---- the slot form ---------------------------------------------------------------------
  const weekdays = [0, 1, 2, 3, 4, 5, 6].map((d) => ({ value: String(d), label: t("weekday_" + d) }));
  const slotForm = form({
    title: t("new_slot"),
    action: "save-slot",
    submit: t("create_slot"),
    fields: [
      { name: "id", label: t("field_slot_id"), placeholder: t("id_hint") },
      { name: "term_id", label: t("field_term"), type: "select", required: true },
      { name: "subject", label: t("field_subject"), required: true },
      { name: "grade", label: t("field_grade"), required: true },
      { name: "title", label: t("field_title") },
      { name: "teacher_id", label: t("field_teacher"), type: "select", required: true },
      { name: "main_classroom_id", label: t("field_main_classroom"), type: "select", required: true },
      { name: "repeat", label: t("field_repeat"), type: "select",
        choices: [{ value: "weekly", label: t("repeat_weekly") }, { value: "once", label: t("repeat_once") }] },
      { name: "weekday", label: t("field_weekday"), type: "select", choices: weekdays },
      { name: "date", label: t("field_date"), type: "date" },
      { name: "starts", label: t("field_starts"), type: "time", required: true },
      { name: "ends", label: t("field_ends"), type: "time", required: true },
      { name: "receiving_classroom_ids", label: t("field_receiving"), type: "checks" }
    ],
    onSubmit: (f) => {
      const v = (/** @type {string} */ name) => control(f, name).value.trim();
      const once = v("repeat") === "once";
      /** @type {Record<string, any>} */
      const doc = {
        term_id: v("term_id"), subject: v("subject"), grade: v("grade"), title: v("title"),
        teacher_id: v("teacher_id"), main_classroom_id: v("main_classroom_id"),
        receiving_classroom_ids: checked(control(f, "receiving_classroom_ids")),
        cluster_id: scopeQuery().cluster || "",
        weekday: once ? null : Number(v("weekday")), date: once ? v("date") : null,
        starts: v("starts"), ends: v("ends")
      };
      if (v("id")) {
        doc.id = v("id");
      }
      return api.post("/api/timetable/slots", doc).then((made) => {
        slotForm.querySelector(".form-error").textContent = "";
        status(t("slot_created", { id: (made && (made.id || (made.slot && made.slot.id))) || doc.id || "" }));
        return load();
      }).catch((err) => {
        throw new Error(slotError(err, dir, t));
      });
    }
  });
  const slotNote = el("p", { className: "note", role: "status", "data-note": "slot" });
  slotForm.insertBefore(slotNote, slotForm.querySelector(".buttons"));
  /** @param {string} text */
  const status = (text) => {
    slotNote.textContent = text;
  };
  const repeatChanged = () => {
    const once = control(slotForm, "repeat").value === "once";
    control(slotForm, "weekday").disabled = once;
    control(slotForm, "date").disabled = !once;
  };
  control(slotForm, "repeat").addEventListener("change", repeatChanged);
  repeatChanged();

  /** Fill the slot form from a grid cell. @param {string} date @param {number} hour */
  const newSlotAt = (date, hour) => {
    control(slotForm, "weekday").value = String(weekday(date));
    control(slotForm, "date").value = date;
    control(slotForm, "starts").value = hhmm(hour * 60);
    control(slotForm, "ends").value = hhmm(hour * 60 + 40);
    status(t("slot_from_cell", { day: t("weekday_" + weekday(date)), date, time: hhmm(hour * 60) }));
    /** @type {HTMLInputElement} */ (control(slotForm, "subject")).focus();
  };

  const refreshChoices = () => {
    const schools = scopeSchools();
    setChoices(control(slotForm, "term_id"), terms.map((x) => ({ value: x.id, label: (x.name || x.id) + " " + (x.starts || "") + "–" + (x.ends || "") })));
    setChoices(control(slotForm, "teacher_id"), dir.teachersOf(schools).map((x) => ({ value: x.id, label: x.name + " · " + dir.schoolName(x.school_id) })));
    const rooms = dir.classroomsOf(schools).map((x) => ({ value: x.id, label: x.name + " · " + dir.schoolName(x.school_id) }));
    setChoices(control(slotForm, "main_classroom_id"), rooms);
    setChecks(control(slotForm, "receiving_classroom_ids"), rooms);
    const save = /** @type {HTMLButtonElement} */ (slotForm.querySelector('[data-action="save-slot"]'));
    const why = !terms.length ? t("need_term") : !rooms.length ? t("need_classroom") : "";
    if (why) {
      save.setAttribute("data-locked", "");
    } else {
      save.removeAttribute("data-locked");
    }
    busy(slotForm, false);
    save.title = why;
    slotForm.querySelector(".form-error").textContent = why;
  };

  // ---- the term form ---------------------------------------------------------------------
  const termList = el("div", { className: "table-box" });
  const termForm = form({
    title: t("new_term"), action: "save-term", submit: t("create"),
    fields: [{ name: "id", label: t("field_id"), required: true, placeholder: t("id_hint") },
      { name: "name", label: t("field_name"), required: true },
      { name: "starts", label: t("field_term_starts"), type: "date", required: true },
      { name: "ends", label: t("field_term_ends"), type: "date", required: true },
      { name: "holidays", label: t("field_holidays"), placeholder: "2026-10-01, 2026-10-02" }],
    onSubmit: (f) => {
      const v = (/** @type {string} */ name) => control(f, name).value.trim();
      return api.post("/api/terms", { id: v("id"), name: v("name"), starts: v("starts"), ends: v("ends"), holidays: words(v("holidays")) })
        .then(() => {
          f.reset();
          return loadTerms();
        }).then(refreshChoices);
    }
  });
  const renderTerms = () => {
    termList.textContent = "";
    termList.appendChild(table([
      { head: t("field_id"), cell: (r) => r.id }, { head: t("field_name"), cell: (r) => r.name },
      { head: t("field_term_starts"), cell: (r) => r.starts }, { head: t("field_term_ends"), cell: (r) => r.ends },
      { head: t("field_holidays"), cell: (r) => (r.holidays || []).length }
    ], terms, t("none_yet"), (r) => ({ "data-row": r.id })));
  };
  const loadTerms = () => api.get("/api/terms").then((b) => {
    terms = listOf(b, "terms");
    renderTerms();
  });

  // ---- CSV import ------------------------------------------------------------------------
  const csvId = "tt-csv";
  const fileInput = el("input", { id: csvId, type: "file", accept: ".csv,text/csv", "data-field": "csv" });
  const dryRun = el("button", { type: "button", "data-action": "csv-dry-run" }, t("csv_dry_run"));
  const doImport = el("button", { type: "button", "data-action": "csv-import", "data-locked": "" }, t("csv_import"));
  doImport.disabled = true;
  const importBox = el("div", { className: "admin-form", "data-form": "csv" });
  const importResult = el("div", { className: "csv-result", "data-csv-result": "" });
  const importError = el("p", { className: "form-error", role: "alert", "data-error": "csv" });
  const buttons = el("div", { className: "buttons" });
  buttons.append(dryRun, doImport);
  const fileField = el("div", { className: "field" });
  fileField.append(el("label", { for: csvId }, t("csv_file")), fileInput);
  importBox.append(el("h3", null, t("csv_title")), el("p", { className: "note" }, t("csv_hint")), fileField, buttons, importError, importResult);
  /** The file of the last clean dry run. @type {File | null} */
  let cleanFile = null;
  const lockImport = () => {
    cleanFile = null;
    doImport.setAttribute("data-locked", "");
    doImport.disabled = true;
  };
  fileInput.addEventListener("change", () => {
    lockImport();
    importResult.textContent = "";
    importError.textContent = "";
  });

  /**
   * The per-row errors of an import answer or refusal, whatever it calls them.
   * @param {any} body @returns {any[]}
   */
  const rowErrors = (body) => {
    const list = body && (body.errors || body.rows_errors || body.rows);
    return Array.isArray(list) ? list.filter((r) => r && typeof r === "object" && (r.message || r.error)) : [];
  };
  /** @param {any} body @param {boolean} dry */
  const showImport = (body, dry) => {
    importResult.textContent = "";
    const errors = rowErrors(body);
    if (errors.length) {
      importResult.appendChild(el("p", { className: "bad" }, t("csv_rows_bad", { count: errors.length })));
      importResult.appendChild(table([
        { head: t("csv_row"), cell: (r) => r.row ?? r.line ?? "" },
        { head: t("csv_field"), cell: (r) => r.field || r.column || "" },
        { head: t("csv_message"), cell: (r) => r.message || r.error }
      ], errors, "", () => ({ "data-csv-error": "" })));
      return false;
    }
    const count = body && (body.imported ?? body.count ?? body.slots ?? (Array.isArray(body.rows) ? body.rows.length : ""));
    importResult.appendChild(el("p", { className: "good", "data-csv-ok": "" },
      t(dry ? "csv_dry_ok" : "csv_done", { count: Array.isArray(count) ? count.length : count ?? "" })));
    return true;
  };
  /** @param {boolean} dry */
  const sendCsv = (dry) => {
    const file = dry ? fileInput.files && fileInput.files[0] : cleanFile;
    if (!file) {
      importError.textContent = t("csv_pick");
      return;
    }
    run(importBox, () => api.post("/api/timetable/import" + (dry ? "?dry_run=1" : ""), file, "text/csv")
      .then((body) => {
        const ok = showImport(body, dry);
        if (dry && ok) {
          cleanFile = file;
          doImport.removeAttribute("data-locked");
        } else {
          lockImport();
        }
        if (!dry) {
          return load();
        }
      }, (err) => {
        lockImport();
        if (err.detail && rowErrors(err.detail).length) {
          showImport(err.detail, dry);
          return;
        }
        importResult.textContent = "";
        throw err;
      }));
  };
  dryRun.onclick = () => sendCsv(true);
  doImport.onclick = () => sendCsv(false);
  exportButton.onclick = () => {
    const q = new URLSearchParams(/** @type {Record<string, string>} */ (scopeQuery()));
    run(controls, () => api.save("/api/timetable/export.csv?" + q, "timetable.csv"));
  };

  // ---- the grid --------------------------------------------------------------------------
  const renderGrid = () => {
    const dates = weekDates(monday);
    const slots = new Map(week.slots.map((s) => [s.id, s]));
    const conflicted = strings(week.conflicts, new Set());
    let first = FIRST_HOUR;
    let last = LAST_HOUR;
    const placed = week.occurrences.map((o) => {
      const slot = slots.get(o.slot_id) || {};
      const start = minutes(slot.starts || o.starts || "");
      const hour = Number.isNaN(start) ? FIRST_HOUR : Math.floor(start / 60);
      first = Math.min(first, hour);
      last = Math.max(last, hour);
      return { occ: o, slot, hour };
    });
    const grid = el("table", { className: "week", "data-monday": monday });
    const head = grid.createTHead().insertRow();
    head.appendChild(el("th", { scope: "col" }, t("time")));
    dates.forEach((d, i) => head.appendChild(el("th", { scope: "col", "data-date": d }, t("weekday_" + i) + " " + d.slice(5))));
    const body = grid.createTBody();
    for (let hour = first; hour <= last; hour++) {
      const tr = body.insertRow();
      tr.appendChild(el("th", { scope: "row" }, hhmm(hour * 60)));
      dates.forEach((date) => {
        const td = tr.insertCell();
        td.setAttribute("data-cell", date + "T" + hhmm(hour * 60));
        placed.filter((p) => p.hour === hour && p.occ.date === date).forEach(({ occ, slot }) => {
          const clash = conflicted.has(occ.lesson_id) || conflicted.has(occ.slot_id);
          const chip = el("div", {
            className: "lesson" + (clash ? " conflict" : ""), "data-lesson": occ.lesson_id || "",
            "data-slot": occ.slot_id || "", title: slotText(slot, dir, t)
          });
          chip.appendChild(el("strong", null, (clash ? "⚠ " : "") + (slot.title || slot.subject || occ.slot_id)));
          chip.appendChild(el("span", null, [slot.grade, slot.starts && slot.starts + "–" + slot.ends,
            slot.teacher_id && dir.teacherName(slot.teacher_id), slot.main_classroom_id && dir.classroomName(slot.main_classroom_id)]
            .filter(Boolean).join(" · ")));
          td.appendChild(chip);
        });
        const add = el("button", { type: "button", className: "add", "data-action": "new-slot",
          "aria-label": t("add_slot_at", { date, time: hhmm(hour * 60) }) }, "+");
        add.onclick = () => newSlotAt(date, hour);
        td.appendChild(add);
      });
    }
    gridBox.textContent = "";
    gridBox.appendChild(grid);
    conflictBox.textContent = "";
    if (week.conflicts.length) {
      conflictBox.appendChild(el("h3", { className: "bad" }, t("conflicts", { count: week.conflicts.length })));
      const ul = el("ul");
      week.conflicts.forEach((c) => ul.appendChild(el("li", { "data-conflict": "" }, conflictText(c))));
      conflictBox.appendChild(ul);
    }
  };
  /** @param {any} c */
  const conflictText = (c) => {
    if (typeof c !== "object" || !c) {
      return String(c);
    }
    if (c.message) {
      return c.message;
    }
    const slots = new Map(week.slots.map((s) => [s.id, s]));
    if (c.slot_id && c.other_id) {
      /** @param {string} id */
      const name = (id) => (slots.has(id) ? slotText(slots.get(id), dir, t) : id);
      return name(c.slot_id) + " ⇄ " + name(c.other_id) + (c.what ? " · " + c.what : "");
    }
    return Array.from(strings(c, new Set())).map((id) => (slots.has(id) ? slotText(slots.get(id), dir, t) : id)).join(" ⇄ ");
  };

  const load = () => {
    weekInput.value = monday;
    const q = new URLSearchParams(Object.assign({ week: monday }, scopeQuery()));
    return run(weekSection, () => api.get("/api/timetable?" + q).then((b) => {
      week = { slots: listOf(b, "slots"), occurrences: listOf(b, "occurrences"), conflicts: listOf(b, "conflicts") };
      renderGrid();
    }), (err) => (notAvailable(err) ? t("not_available", { what: t("tab_timetable") }) : err.message));
  };
  weekInput.addEventListener("change", () => {
    if (weekInput.value) {
      monday = mondayOf(weekInput.value);
      load();
    }
  });
  prev.onclick = () => {
    monday = addDays(monday, -7);
    load();
  };
  next.onclick = () => {
    monday = addDays(monday, 7);
    load();
  };
  scope.addEventListener("change", () => {
    refreshChoices();
    load();
  });
  const scopeChoices = () => [
    ...dir.schools.map((s) => ({ value: "school:" + s.id, label: t("school_scope", { name: s.name }) })),
    ...dir.clusters.map((c) => ({ value: "cluster:" + c.id, label: t("cluster_scope", { name: c.name }) }))
  ];
  dir.onChange(() => {
    setChoices(scope, scopeChoices());
    refreshChoices();
  });

  const weekSection = el("div", { className: "entity wide" });
  weekSection.append(heading(t("week_title")), controls, gridError, gridBox, conflictBox);
  const side = el("div", { className: "columns" });
  const termSection = el("div", { className: "entity" });
  termSection.append(heading(t("terms")), termList, termForm);
  const slotSection = el("div", { className: "entity" });
  slotSection.append(slotForm);
  const stack = el("div", { className: "stack" });
  stack.append(importBox, termSection);
  side.append(slotSection, stack);

  return {
    refresh: () => {
      setChoices(scope, scopeChoices());
      return loadTerms().then(() => {
        panel.textContent = "";
        panel.append(weekSection, side);
        refreshChoices();
        return load();
      }, (err) => {
        unavailable(panel, notAvailable(err) ? t("not_available", { what: t("tab_timetable") }) : t("load_failed", { error: err.message }));
      });
    },
    state: () => ({
      monday, lang, occurrences: week.occurrences.length, conflicts: week.conflicts.length,
      marked: panel.querySelectorAll(".lesson.conflict").length
    })
  };
}
