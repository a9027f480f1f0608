// @ts-check
/* The admin console (/admin#token=...): directory, timetable, devices, lesson links and
 * statistics, one tab each. The token travels in the URL fragment and goes only to /api as a
 * bearer. A school_admin token gets only its schools' data from the API; the page shows what
 * the API gives. window.adminState() reports what each panel shows (for tests).
 */
import { $ } from "./dom.js";
import { applyI18n, lang, translator } from "./i18n.js";
import { readToken, tokenClaims } from "./protocol.js";
import { createApi } from "./admin-api.js";
import { Directory, mountDirectory } from "./admin-directory.js";
import { mountTimetable } from "./admin-timetable.js";
import { mountDevices } from "./admin-devices.js";
import { mountLessons } from "./admin-lessons.js";
import { mountStats } from "./admin-stats.js";
import { ADMIN } from "./strings-admin.js";

const t = translator(ADMIN);

/** @typedef {{refresh: () => Promise<unknown>, state?: () => Record<string, any>}} Panel */

function main() {
  applyI18n(t);
  const token = readToken();
  const status = $("#status");
  const langLink = $("#lang-switch", HTMLAnchorElement);
  langLink.textContent = lang === "en" ? "中文" : "English";
  langLink.href = (lang === "en" ? location.pathname : "?lang=en") + location.hash;
  if (!token) {
    status.textContent = t("no_token");
    return;
  }
  const dir = new Directory(createApi(token), String(tokenClaims(token).role || ""));
  /** @type {Record<string, Panel>} */
  const panels = {
    directory: mountDirectory($("#panel-directory"), dir, t),
    timetable: mountTimetable($("#panel-timetable"), dir, t),
    devices: mountDevices($("#panel-devices"), dir, t),
    lessons: mountLessons($("#panel-lessons"), dir, t),
    stats: mountStats($("#panel-stats"), dir, t)
  };
  /** @type {Record<string, "loading" | "ready">} */
  const loaded = {};
  let current = "";

  /** Show tab `name` (loading its panel the first time and on every return). @param {string} name */
  const show = (name) => {
    if (!panels[name]) {
      name = "directory";
    }
    current = name;
    document.querySelectorAll("[data-tab]").forEach((b) => {
      const on = b.getAttribute("data-tab") === name;
      b.setAttribute("aria-selected", on ? "true" : "false");
      b.classList.toggle("on", on);
    });
    document.querySelectorAll("[data-panel]").forEach((p) => {
      /** @type {HTMLElement} */ (p).hidden = p.getAttribute("data-panel") !== name;
    });
    loaded[name] = "loading";
    const first = name === "directory" ? Promise.resolve() : dir.load().catch(() => {});
    first.then(() => panels[name].refresh()).finally(() => {
      loaded[name] = "ready";
    });
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    params.set("tab", name);
    history.replaceState(null, "", "#" + params);
    langLink.href = (lang === "en" ? location.pathname : "?lang=en") + location.hash;
  };
  document.querySelectorAll("[data-tab]").forEach((b) => {
    b.addEventListener("click", () => show(b.getAttribute("data-tab") || "directory"));
  });
  window.adminState = () => {
    /** @type {Record<string, any>} */
    const out = { tab: current, ready: loaded[current] === "ready", schools: dir.schools.map((s) => s.id) };
    Object.entries(panels).forEach(([name, p]) => {
      if (p.state) {
        out[name] = p.state();
      }
    });
    return out;
  };
  show(new URLSearchParams(location.hash.replace(/^#/, "")).get("tab") || "directory");
}

main();
