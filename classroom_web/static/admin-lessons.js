// @ts-check
/* The lesson-links panel (今日课程): a day's occurrences from the timetable, and for each
 * the teacher console, each classroom's view and the learning report, as links with their
 * token in the fragment (minted on demand with POST /api/tokens; never sent to the server
 * in a URL).
 */
import { el } from "./dom.js";
import { lang } from "./i18n.js";
import { listOf, notAvailable, seg } from "./admin-api.js";
import { heading, run, setChoices, table, unavailable } from "./admin-ui.js";
import { mondayOf, today } from "./admin-week.js";
import { slotText } from "./admin-timetable.js";

/** @typedef {import("./admin-directory.js").Directory} Directory */
/** @typedef {import("./i18n.js").Translate} Translate */

/**
 * Build the lesson-links panel into `panel`.
 * @param {HTMLElement} panel @param {Directory} dir @param {Translate} t
 * @returns {{refresh: () => Promise<unknown>}}
 */
export function mountLessons(panel, dir, t) {
  const api = dir.api;
  const day = el("input", { id: "ls-day", type: "date", "data-action": "pick-day" });
  day.value = today();
  const scope = el("select", { id: "ls-school", "data-action": "pick-lesson-school" });
  const picker = el("div", { className: "picker" });
  picker.append(el("label", { for: "ls-day", className: "inline" }, t("day")), day,
    el("label", { for: "ls-school", className: "inline" }, t("current_school")), scope);
  const box = el("div", { className: "table-box" });
  const section = el("div", { className: "entity wide" });
  const error = el("p", { className: "form-error", role: "alert", "data-error": "lessons" });
  section.append(heading(t("lessons_title")), el("p", { className: "note" }, t("links_hint")), picker, error, box);

  /**
   * A link to a page of the lesson with a freshly minted token in its fragment.
   * @param {string} page @param {string} lesson @param {Record<string, string>} claims
   */
  const mint = (page, lesson, claims) => api.post("/api/tokens", Object.assign({ lesson }, claims))
    .then((b) => `${location.origin}/${page}/${seg(lesson)}${lang === "en" ? "?lang=en" : ""}#token=${b.token}`);

  /** @param {any} occ @param {any} slot @param {HTMLElement} cell */
  const makeLinks = (occ, slot, cell) => {
    const lesson = occ.lesson_id;
    const rooms = [slot.main_classroom_id, ...(slot.receiving_classroom_ids || [])].filter(Boolean);
    const teacher = dir.teachersOf().find((x) => x.id === slot.teacher_id);
    const school = teacher ? teacher.school_id : "";
    const all = dir.classroomsOf();
    return Promise.all([
      mint("teach", lesson, { role: "teacher", school, name: teacher ? teacher.name : "" }),
      ...rooms.map((id) => {
        const room = all.find((r) => r.id === id) || { id, school_id: "", name: id };
        return mint("class", lesson, { role: "classroom", school: room.school_id, name: room.name });
      })
    ]).then(([teach, ...views]) => {
      cell.textContent = "";
      const list = el("ul", { className: "links" });
      /** @param {string} label @param {string} href @param {string} kind */
      const item = (label, href, kind) => {
        const li = el("li");
        li.appendChild(el("a", { href, target: "_blank", rel: "noopener", "data-link": kind }, label));
        const copy = el("button", { type: "button", "data-action": "copy-link" }, t("copy"));
        copy.onclick = () => navigator.clipboard && navigator.clipboard.writeText(href).then(() => {
          copy.textContent = t("copied");
        }, () => {});
        li.appendChild(copy);
        list.appendChild(li);
      };
      item(t("link_teacher"), teach, "teach");
      views.forEach((href, i) => item(t("link_classroom", { name: dir.classroomName(rooms[i]) }), href, "class"));
      item(t("link_report"), teach.replace("/teach/", "/report/"), "report");
      cell.appendChild(list);
    });
  };

  const load = () => {
    const q = new URLSearchParams({ week: mondayOf(day.value || today()) });
    if (scope.value) {
      q.set("school", scope.value);
    }
    return api.get("/api/timetable?" + q).then((b) => {
      const slots = new Map(listOf(b, "slots").map((s) => [s.id, s]));
      const occs = listOf(b, "occurrences").filter((o) => o.date === day.value)
        .sort((a, b2) => (a.starts_at || 0) - (b2.starts_at || 0));
      box.textContent = "";
      box.appendChild(table([
        { head: t("time"), cell: (o) => { const s = slots.get(o.slot_id) || {}; return (s.starts || "") + "–" + (s.ends || ""); } },
        { head: t("lesson"), cell: (o) => slotText(slots.get(o.slot_id) || { id: o.slot_id }, dir, t) },
        { head: t("lesson_id"), cell: (o) => o.lesson_id },
        { head: t("links"), cell: (o) => {
          const cell = el("div", { className: "link-cell" });
          const make = el("button", { type: "button", "data-action": "make-links" }, t("make_links"));
          make.onclick = () => run(cell, () => makeLinks(o, slots.get(o.slot_id) || {}, cell));
          cell.append(make, el("p", { className: "form-error", role: "alert" }));
          return cell;
        } }
      ], occs, t("no_lessons_today"), (o) => ({ "data-lesson": o.lesson_id })));
    });
  };
  day.addEventListener("change", () => run(section, load));
  scope.addEventListener("change", () => run(section, load));
  dir.onChange(() => setChoices(scope, [{ value: "", label: t("all_schools") }, ...dir.schools.map((s) => ({ value: s.id, label: s.name }))]));

  return {
    refresh: () => load().then(() => {
      panel.textContent = "";
      panel.append(section);
    }, (err) => {
      unavailable(panel, notAvailable(err) ? t("not_available", { what: t("tab_lessons") }) : t("load_failed", { error: err.message }));
    })
  };
}
