// @ts-check
/* The directory panel (学校与教室): schools, clusters (集群), a school's classrooms (each a
 * device: TV, whiteboard, PC) and teachers. List, create, edit, delete; the API's error is
 * shown beside its form. The loaded directory is shared with the other panels (`Directory`).
 * A school_admin token gets only its schools from the API; the page shows what it gets.
 */
import { el } from "./dom.js";
import { listOf, notAvailable, seg } from "./admin-api.js";
import { busy, checked, confirmButton, control, form, heading, run, setChecks, setChoices, table, unavailable } from "./admin-ui.js";

/** @typedef {import("./admin-api.js").Api} Api */
/** @typedef {import("./i18n.js").Translate} Translate */
/** @typedef {import("./admin-ui.js").FieldSpec} FieldSpec */

const KINDS = ["primary", "junior", "senior", "point"];
const DEVICE_KINDS = ["tv", "whiteboard", "pc"];

/** What the panels share: the directory as the API last gave it. */
export class Directory {
  /** @param {Api} api @param {string} [role] the token's role claim (what to offer, not what is allowed) */
  constructor(api, role = "") {
    this.api = api;
    this.role = role;
    /** @type {any[]} */ this.schools = [];
    /** @type {any[]} */ this.clusters = [];
    /** @type {Record<string, any[]>} school id -> classrooms */ this.classrooms = {};
    /** @type {Record<string, any[]>} school id -> teachers */ this.teachers = {};
    /** @type {boolean} false when this server has no directory API */ this.available = true;
    /** @type {Set<() => void>} */ this.listeners = new Set();
  }

  /** Call `cb` after every reload. @param {() => void} cb */
  onChange(cb) {
    this.listeners.add(cb);
  }

  /** Reload schools, clusters, and every school's classrooms and teachers. */
  load() {
    return Promise.all([
      this.api.get("/api/schools").then((b) => listOf(b, "schools")),
      this.api.get("/api/clusters").then((b) => listOf(b, "clusters"), () => /** @type {any[]} */ ([]))
    ]).then(([schools, clusters]) => {
      this.schools = schools;
      this.clusters = clusters;
      return Promise.all(schools.map((s) => this.loadSchool(s.id)));
    }).then(() => {
      this.available = true;
      this.listeners.forEach((cb) => cb());
    }, (err) => {
      if (notAvailable(err)) {
        this.available = false;
      }
      throw err;
    });
  }

  /** @param {string} school */
  loadSchool(school) {
    return Promise.all([
      this.api.get(`/api/schools/${seg(school)}/classrooms`).then((b) => listOf(b, "classrooms"), () => /** @type {any[]} */ ([])),
      this.api.get(`/api/schools/${seg(school)}/teachers`).then((b) => listOf(b, "teachers"), () => /** @type {any[]} */ ([]))
    ]).then(([rooms, teachers]) => {
      this.classrooms[school] = rooms;
      this.teachers[school] = teachers;
    });
  }

  /** Every classroom of the schools given (all loaded schools when none). @param {string[]} [schools] */
  classroomsOf(schools) {
    return (schools || this.schools.map((s) => s.id)).flatMap((id) => this.classrooms[id] || []);
  }

  /** @param {string[]} [schools] */
  teachersOf(schools) {
    return (schools || this.schools.map((s) => s.id)).flatMap((id) => this.teachers[id] || []);
  }

  /** A school's name by id (its id when unknown). @param {string} id */
  schoolName(id) {
    const s = this.schools.find((x) => x.id === id);
    return s ? s.name || id : id;
  }

  /** @param {string} id */
  teacherName(id) {
    const tch = this.teachersOf().find((x) => x.id === id);
    return tch ? tch.name || id : id;
  }

  /** @param {string} id */
  classroomName(id) {
    const room = this.classroomsOf().find((x) => x.id === id);
    return room ? room.name || id : id;
  }

  /** The schools of a cluster. @param {string} id @returns {string[]} */
  clusterSchools(id) {
    const c = this.clusters.find((x) => x.id === id);
    return c ? c.school_ids || [] : [];
  }
}

/**
 * @typedef {{
 *   kind: string,
 *   title: string,
 *   fields: () => FieldSpec[],
 *   columns: {head: string, cell: (row: any) => string | number | Node | null}[],
 *   rows: () => any[],
 *   create: (doc: Record<string, any>) => Promise<any>,
 *   update: (id: string, doc: Record<string, any>) => Promise<any>,
 *   remove: (id: string) => Promise<any>,
 *   toDoc: (form: HTMLFormElement) => Record<string, any>,
 *   fill: (form: HTMLFormElement, row: any) => void,
 *   refresh?: (form: HTMLFormElement) => void,
 *   disabled?: (editing: boolean) => string
 * }} EntitySpec
 */

/**
 * One kind's section: its table (edit, delete with a confirm) and its create/edit form.
 * @param {EntitySpec} spec @param {Translate} t @param {() => Promise<unknown>} reload
 * @returns {{node: HTMLElement, render: () => void}}
 */
function entitySection(spec, t, reload) {
  const node = el("div", { className: "entity", "data-entity": spec.kind });
  const tableBox = el("div", { className: "table-box" });
  const listError = el("p", { className: "form-error", role: "alert", "data-error": "delete-" + spec.kind });
  /** @type {string | null} the id being edited */
  let editing = null;
  const cancel = el("button", { type: "button", "data-action": "cancel-edit-" + spec.kind }, t("cancel"));
  const f = form({
    title: t("new_" + spec.kind),
    fields: spec.fields(),
    submit: t("create"),
    action: "save-" + spec.kind,
    extra: [cancel],
    onSubmit: (fm) => {
      const doc = spec.toDoc(fm);
      const done = editing ? spec.update(editing, doc) : spec.create(doc);
      return done.then(() => {
        stopEditing();
        return reload();
      });
    }
  });
  /** Lock the save button (with its reason beside it) when this token may not save. */
  const lock = () => {
    const why = spec.disabled ? spec.disabled(editing !== null) : "";
    const save = /** @type {HTMLButtonElement} */ (f.querySelector(`[data-action="save-${spec.kind}"]`));
    if (why) {
      save.setAttribute("data-locked", "");
    } else {
      save.removeAttribute("data-locked");
    }
    busy(f, false);
    save.title = why;
    f.querySelector(".form-error").textContent = why;
  };
  const stopEditing = () => {
    editing = null;
    f.reset();
    control(f, "id").disabled = false;
    f.querySelector("h3").textContent = t("new_" + spec.kind);
    f.querySelector(`[data-action="save-${spec.kind}"]`).textContent = t("create");
    cancel.hidden = true;
    lock();
  };
  cancel.onclick = stopEditing;
  cancel.hidden = true;

  /** @param {any} row */
  const startEditing = (row) => {
    editing = row.id;
    spec.fill(f, row);
    const id = control(f, "id");
    id.value = row.id;
    id.disabled = true;
    f.querySelector("h3").textContent = t("edit_" + spec.kind, { id: row.id });
    f.querySelector(`[data-action="save-${spec.kind}"]`).textContent = t("save");
    cancel.hidden = false;
    lock();
  };

  /** @param {any} row */
  const actions = (row) => {
    const box = el("span", { className: "row-actions" });
    const edit = el("button", { type: "button", "data-action": "edit-" + spec.kind }, t("edit"));
    edit.onclick = () => startEditing(row);
    box.appendChild(edit);
    box.appendChild(confirmButton({
      label: t("delete"), confirm: t("confirm_delete"), cancel: t("cancel"), action: "delete-" + spec.kind,
      act: () => {
        run(node, () => spec.remove(row.id).then(() => {
          if (editing === row.id) {
            stopEditing();
          }
          return reload();
        }));
      }
    }));
    return box;
  };

  node.appendChild(heading(spec.title));
  node.appendChild(tableBox);
  node.appendChild(listError);
  node.appendChild(f);
  const render = () => {
    tableBox.textContent = "";
    tableBox.appendChild(table([...spec.columns, { head: "", cell: actions }], spec.rows(), t("none_yet"),
      (row) => ({ "data-row": row.id })));
    if (spec.refresh) {
      spec.refresh(f);
    }
    lock();
  };
  return { node, render };
}

/** @param {HTMLFormElement} f @param {string} name */
const val = (f, name) => control(f, name).value.trim();

/** Comma, 、 or space separated words. @param {string} text */
export function words(text) {
  return text.split(/[,，、\s]+/).map((w) => w.trim()).filter(Boolean);
}

/**
 * Build the directory panel into `panel`.
 * @param {HTMLElement} panel @param {Directory} dir @param {Translate} t
 * @returns {{refresh: () => Promise<unknown>}}
 */
export function mountDirectory(panel, dir, t) {
  const api = dir.api;
  const schoolPick = el("select", { id: "dir-school", "data-action": "pick-school" });
  const pickLabel = el("label", { for: "dir-school", className: "inline" }, t("current_school"));
  /** The school whose classrooms and teachers are shown. */
  const current = () => schoolPick.value;
  const reload = () => dir.load().then(() => /** @type {void} */ (undefined));
  const schoolChoices = () => dir.schools.map((s) => ({ value: s.id, label: s.name + " (" + s.id + ")" }));
  const idField = { name: "id", label: t("field_id"), required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_\\-]{0,63}", placeholder: t("id_hint") };
  const needSchool = () => (current() ? "" : t("need_school"));
  /** A school_admin edits its school but creates no school and changes no cluster. */
  const districtOnly = (/** @type {boolean} */ editing) => (dir.role === "school_admin" && !editing ? t("district_only") : "");

  /** @type {EntitySpec[]} */
  const specs = [
    {
      kind: "school", title: t("schools"),
      fields: () => [idField, { name: "name", label: t("field_name"), required: true },
        { name: "district", label: t("field_district") },
        { name: "kind", label: t("field_kind"), type: "select", choices: KINDS.map((k) => ({ value: k, label: t("kind_" + k) })) }],
      columns: [{ head: t("field_id"), cell: (r) => r.id }, { head: t("field_name"), cell: (r) => r.name },
        { head: t("field_district"), cell: (r) => r.district || "" }, { head: t("field_kind"), cell: (r) => t("kind_" + r.kind) }],
      rows: () => dir.schools,
      create: (doc) => api.post("/api/schools", doc),
      update: (id, doc) => api.put(`/api/schools/${seg(id)}`, doc),
      remove: (id) => api.del(`/api/schools/${seg(id)}`),
      toDoc: (f) => ({ id: val(f, "id"), name: val(f, "name"), district: val(f, "district"), kind: val(f, "kind") }),
      disabled: districtOnly,
      fill: (f, r) => {
        control(f, "name").value = r.name || "";
        control(f, "district").value = r.district || "";
        control(f, "kind").value = r.kind || "primary";
      }
    },
    {
      kind: "cluster", title: t("clusters"),
      fields: () => [idField, { name: "name", label: t("field_name"), required: true },
        { name: "school_ids", label: t("field_cluster_schools"), type: "checks", choices: schoolChoices() }],
      columns: [{ head: t("field_id"), cell: (r) => r.id }, { head: t("field_name"), cell: (r) => r.name },
        { head: t("field_cluster_schools"), cell: (r) => (r.school_ids || []).map((/** @type {string} */ s) => dir.schoolName(s)).join("、") }],
      rows: () => dir.clusters,
      create: (doc) => api.post("/api/clusters", doc),
      update: (id, doc) => api.put(`/api/clusters/${seg(id)}`, doc),
      remove: (id) => api.del(`/api/clusters/${seg(id)}`),
      toDoc: (f) => ({ id: val(f, "id"), name: val(f, "name"), school_ids: checked(control(f, "school_ids")) }),
      fill: (f, r) => {
        control(f, "name").value = r.name || "";
        const box = control(f, "school_ids");
        box.querySelectorAll("input").forEach((n) => {
          n.checked = (r.school_ids || []).includes(n.value);
        });
      },
      refresh: (f) => setChecks(control(f, "school_ids"), schoolChoices()),
      disabled: () => (dir.role === "school_admin" ? t("district_only") : "")
    },
    {
      kind: "classroom", title: t("classrooms"),
      fields: () => [idField, { name: "name", label: t("field_name"), required: true },
        { name: "device_kind", label: t("field_device_kind"), type: "select",
          choices: DEVICE_KINDS.map((k) => ({ value: k, label: t("device_" + k) })) }],
      columns: [{ head: t("field_id"), cell: (r) => r.id }, { head: t("field_name"), cell: (r) => r.name },
        { head: t("field_device_kind"), cell: (r) => t("device_" + r.device_kind) }],
      rows: () => dir.classrooms[current()] || [],
      create: (doc) => api.post(`/api/schools/${seg(current())}/classrooms`, doc),
      update: (id, doc) => api.put(`/api/classrooms/${seg(id)}`, Object.assign({ school_id: current() }, doc)),
      remove: (id) => api.del(`/api/classrooms/${seg(id)}`),
      toDoc: (f) => ({ id: val(f, "id"), name: val(f, "name"), device_kind: val(f, "device_kind") }),
      fill: (f, r) => {
        control(f, "name").value = r.name || "";
        control(f, "device_kind").value = r.device_kind || "tv";
      },
      disabled: needSchool
    },
    {
      kind: "teacher", title: t("teachers"),
      fields: () => [idField, { name: "name", label: t("field_name"), required: true },
        { name: "subjects", label: t("field_subjects"), placeholder: t("subjects_hint") }],
      columns: [{ head: t("field_id"), cell: (r) => r.id }, { head: t("field_name"), cell: (r) => r.name },
        { head: t("field_subjects"), cell: (r) => (r.subjects || []).join("、") }],
      rows: () => dir.teachers[current()] || [],
      create: (doc) => api.post(`/api/schools/${seg(current())}/teachers`, doc),
      update: (id, doc) => api.put(`/api/teachers/${seg(id)}`, Object.assign({ school_id: current() }, doc)),
      remove: (id) => api.del(`/api/teachers/${seg(id)}`),
      toDoc: (f) => ({ id: val(f, "id"), name: val(f, "name"), subjects: words(val(f, "subjects")) }),
      fill: (f, r) => {
        control(f, "name").value = r.name || "";
        control(f, "subjects").value = (r.subjects || []).join(", ");
      },
      disabled: needSchool
    }
  ];
  const sections = specs.map((s) => entitySection(s, t, reload));
  const top = el("div", { className: "columns" });
  const bottom = el("div", { className: "columns" });
  top.append(sections[0].node, sections[1].node);
  bottom.append(sections[2].node, sections[3].node);
  const picker = el("div", { className: "picker" });
  picker.append(pickLabel, schoolPick);
  const render = () => {
    setChoices(schoolPick, schoolChoices());
    if (!schoolPick.value && dir.schools.length) {
      schoolPick.value = dir.schools[0].id;
    }
    sections.forEach((s) => s.render());
  };
  schoolPick.addEventListener("change", render);
  dir.onChange(render);
  const build = () => {
    panel.textContent = "";
    panel.append(top, picker, bottom);
  };
  return {
    refresh: () => reload().then(build, (/** @type {any} */ err) => {
      unavailable(panel, notAvailable(err) ? t("not_available", { what: t("tab_directory") }) : t("load_failed", { error: err.message }));
    })
  };
}
