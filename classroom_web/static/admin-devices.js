// @ts-check
/* The devices panel (教室终端): each classroom device with online, last seen, current lesson,
 * tier and RTT; pairing (the code a new TV's /room page shows + the classroom it is in) and
 * revocation with a confirm. Online, last seen and the current lesson are the device
 * record's (GET /api/devices); tier and RTT are the live lesson's: the device's classroom in
 * the lesson's roster (GET /api/lessons/{lesson}: its peer and tier) and that peer's
 * subscriber in GET /api/relay (its rate controller's RTT). "—" when not in a lesson.
 */
import { el } from "./dom.js";
import { listOf, notAvailable, seg } from "./admin-api.js";
import { confirmButton, control, form, heading, run, setChoices, table, unavailable } from "./admin-ui.js";

/** @typedef {import("./admin-directory.js").Directory} Directory */
/** @typedef {import("./i18n.js").Translate} Translate */

/** "3 min ago" from an epoch (seconds) or ISO time. @param {any} when @param {Translate} t */
export function ago(when, t) {
  if (when === null || when === undefined || when === "") {
    return t("never");
  }
  const ms = typeof when === "number" ? when * 1000 : Date.parse(String(when));
  if (Number.isNaN(ms)) {
    return String(when);
  }
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? t("seconds_ago", { n: s }) : s < 3600 ? t("minutes_ago", { n: Math.round(s / 60) })
    : s < 86400 ? t("hours_ago", { n: Math.round(s / 3600) }) : new Date(ms).toLocaleString();
}

/**
 * A device's place in its live lesson: its roster entry (the classroom token the device was
 * given carries its classroom's name and school) and its relay subscriber.
 * @param {any} device @param {Record<string, any[]>} rosters lesson -> roster
 * @param {any} relay GET /api/relay @param {string} classroomName
 * @returns {{tier: string, rtt: number | null} | null}
 */
export function liveOf(device, rosters, relay, classroomName) {
  const roster = device.lesson_id ? rosters[device.lesson_id] : null;
  if (!roster || device.revoked_at) {
    return null;
  }
  const peer = roster.find((p) => p.role === "classroom" && p.name === classroomName &&
    (!p.school || p.school === device.school_id));
  if (!peer) {
    return null;
  }
  const lesson = relay && relay.lessons ? relay.lessons[device.lesson_id] : null;
  const sub = lesson && lesson.subscribers ? lesson.subscribers[peer.peer_id] : null;
  const rtt = sub && sub.rate_control && typeof sub.rate_control.rtt === "number" ? sub.rate_control.rtt : null;
  return { tier: peer.tier || (sub && sub.tier) || "", rtt: rtt === null ? null : rtt * 1000 };
}

/**
 * Build the devices panel into `panel`.
 * @param {HTMLElement} panel @param {Directory} dir @param {Translate} t
 * @returns {{refresh: () => Promise<unknown>, state: () => Record<string, any>}}
 */
export function mountDevices(panel, dir, t) {
  const api = dir.api;
  /** @type {any[]} */
  let devices = [];
  /** @type {any} */
  let relay = null;
  /** @type {Record<string, any[]>} lesson -> its roster, for the devices in a lesson */
  let rosters = {};
  const schoolPick = el("select", { id: "dev-school", "data-action": "pick-device-school" });
  const reloadButton = el("button", { type: "button", "data-action": "reload-devices" }, t("reload"));
  const listBox = el("div", { className: "table-box" });
  const listSection = el("div", { className: "entity wide" });
  const listError = el("p", { className: "form-error", role: "alert", "data-error": "devices" });
  const picker = el("div", { className: "picker" });
  picker.append(el("label", { for: "dev-school", className: "inline" }, t("current_school")), schoolPick, reloadButton);
  listSection.append(heading(t("devices")), picker, listError, listBox);

  const pairForm = form({
    title: t("pair_title"), action: "pair-device", submit: t("pair"),
    fields: [
      { name: "code", label: t("field_pair_code"), required: true, placeholder: t("pair_code_hint") },
      { name: "classroom_id", label: t("field_classroom"), type: "select", required: true },
      { name: "name", label: t("field_device_name"), placeholder: t("device_name_hint") }
    ],
    onSubmit: (f) => {
      const v = (/** @type {string} */ n) => control(f, n).value.trim();
      return api.post("/api/devices", { code: v("code").replace(/\s+/g, ""), classroom_id: v("classroom_id"), name: v("name") })
        .then((made) => {
          f.reset();
          note.textContent = t("paired", { name: (made && (made.name || made.id)) || "" });
          return load();
        });
    }
  });
  const note = el("p", { className: "note good", role: "status", "data-note": "pair" });
  pairForm.insertBefore(note, pairForm.querySelector(".buttons"));
  pairForm.insertBefore(el("p", { className: "note" }, t("pair_hint")), pairForm.querySelector(".fields"));

  const render = () => {
    listBox.textContent = "";
    listBox.appendChild(table([
      { head: t("field_device_name"), cell: (d) => d.name || d.id },
      { head: t("field_classroom"), cell: (d) => dir.classroomName(d.classroom_id) },
      { head: t("field_school"), cell: (d) => dir.schoolName(d.school_id) },
      { head: t("online"), cell: (d) => d.revoked_at ? el("span", { className: "bad" }, t("revoked"))
        : el("span", { className: d.online ? "good" : "muted", "data-online": d.online ? "yes" : "no" }, d.online ? t("online_yes") : t("online_no")) },
      { head: t("last_seen"), cell: (d) => ago(d.last_seen, t) },
      { head: t("current_lesson"), cell: (d) => d.lesson_title || d.lesson_id || (d.lesson && (d.lesson.title || d.lesson.id)) || "—" },
      { head: t("tier"), cell: (d) => {
        const live = liveOf(d, rosters, relay, dir.classroomName(d.classroom_id));
        return live && live.tier ? t("tier_" + live.tier) : "—";
      } },
      { head: "RTT", cell: (d) => {
        const live = liveOf(d, rosters, relay, dir.classroomName(d.classroom_id));
        return live && live.rtt !== null ? Math.round(live.rtt) + " ms" : "—";
      } },
      { head: "", cell: (d) => d.revoked_at ? null : confirmButton({
        label: t("revoke"), confirm: t("confirm_revoke"), cancel: t("cancel"), action: "revoke-device",
        act: () => {
          run(listSection, () => api.del(`/api/devices/${seg(d.id)}`).then(load));
        }
      }) }
    ], devices, t("no_devices"), (d) => ({ "data-device": d.id, "data-revoked": d.revoked_at ? "yes" : "no" })));
  };

  const load = () => {
    const school = schoolPick.value;
    return Promise.all([
      api.get("/api/devices" + (school ? "?school=" + encodeURIComponent(school) : "")),
      api.get("/api/relay").catch(() => /** @type {any} */ (null))
    ]).then(([body, rel]) => {
      devices = listOf(body, "devices");
      relay = rel;
      const lessons = Array.from(new Set(devices.filter((d) => d.lesson_id && !d.revoked_at).map((d) => String(d.lesson_id))));
      return Promise.all(lessons.map((id) => api.get(`/api/lessons/${seg(id)}`)
        .then((l) => [id, listOf(l, "roster")], () => /** @type {[string, any[]]} */ ([id, []]))));
    }).then((pairs) => {
      rosters = Object.fromEntries(pairs);
      render();
    });
  };
  const refreshChoices = () => {
    setChoices(schoolPick, [{ value: "", label: t("all_schools") },
      ...dir.schools.map((s) => ({ value: s.id, label: s.name }))]);
    setChoices(control(pairForm, "classroom_id"), dir.classroomsOf().map((c) => ({
      value: c.id, label: c.name + " · " + dir.schoolName(c.school_id) + " · " + t("device_" + c.device_kind)
    })));
  };
  dir.onChange(refreshChoices);
  schoolPick.addEventListener("change", () => run(listSection, load));
  reloadButton.onclick = () => run(listSection, load);
  const side = el("div", { className: "columns" });
  side.append(pairForm, el("div"));

  return {
    refresh: () => {
      refreshChoices();
      return load().then(() => {
        panel.textContent = "";
        panel.append(listSection, side);
      }, (err) => {
        unavailable(panel, notAvailable(err) ? t("not_available", { what: t("tab_devices") }) : t("load_failed", { error: err.message }));
      });
    },
    state: () => ({
      devices: devices.length,
      revoked: devices.filter((d) => d.revoked_at).length
    })
  };
}
