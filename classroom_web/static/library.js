// @ts-check
/* The library (共享课堂): recordings the token may see, with search and filters.
 * The token travels in the URL fragment (#token=...) and goes only to /api as a bearer.
 */
import { $, el } from "./dom.js";
import { applyI18n, lang, translator } from "./i18n.js";
import { apiJson, readToken } from "./protocol.js";
import { LIBRARY } from "./strings.js";

const t = translator(LIBRARY);
const FILTERS = ["subject", "grade", "school"];

/** @param {number} s seconds @returns {string} h:mm:ss or m:ss */
function duration(s) {
  s = Math.round(s || 0);
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  return (h ? h + ":" + String(m % 60).padStart(2, "0") : m) + ":" + String(s % 60).padStart(2, "0");
}

/** @type {Record<string, Set<string>>} filter -> the values seen in the results */
const seen = { subject: new Set(), grade: new Set(), school: new Set() };

/** @param {any} rec */
function remember(rec) {
  ["subject", "grade"].forEach((k) => {
    if (rec[k]) {
      seen[k].add(rec[k]);
    }
  });
  (rec.schools || []).forEach((/** @type {string} */ s) => seen.school.add(s));
}

/** @param {string} id */
function fillSelect(id) {
  const sel = $("#" + id, HTMLSelectElement);
  const keep = sel.value;
  Array.from(seen[id]).sort().forEach((v) => {
    if (!sel.querySelector('option[value="' + CSS.escape(v) + '"]')) {
      sel.appendChild(el("option", { value: v }, v));
    }
  });
  sel.value = keep;
}

/** @param {any} rec one recording of /api/recordings */
function card(rec) {
  const li = el("li", { className: "card", "data-recording": rec.id });
  const a = rec.replay_url
    ? el("a", { href: rec.replay_url + (lang === "en" ? "&lang=en" : ""), "data-action": "open-replay" })
    : el("div");
  if (rec.poster_url) {
    const img = el("img", { alt: "", loading: "lazy" });
    img.src = rec.poster_url;
    a.appendChild(img);
  } else {
    a.appendChild(el("div", { className: "noposter" }));
  }
  const body = el("div", { className: "body" });
  body.appendChild(el("div", { className: "title" }, rec.title || rec.lesson));
  body.appendChild(el("div", { className: "sub" },
    [rec.teacher, rec.school, rec.subject, rec.grade, rec.date, duration(rec.duration),
      (rec.parts || []).length > 1 ? t("parts", { n: rec.parts.length }) : ""].filter(Boolean).join(" · ")));
  if (rec.state !== "ready") {
    /** @type {Record<string, string>} */
    const states = { failed: "failed_state", recording: "recording", interrupted: "interrupted" };
    body.appendChild(el("div", { className: "state" }, t(states[rec.state] || "packaging")));
  }
  a.appendChild(body);
  li.appendChild(a);
  return li;
}

function load() {
  const status = $("#status");
  const list = $("#list");
  const tok = readToken();
  if (!tok) {
    status.textContent = t("no_token");
    return;
  }
  const params = new URLSearchParams();
  const q = $("#q", HTMLInputElement).value.trim();
  if (q) {
    params.set("q", q);
  }
  FILTERS.forEach((k) => {
    const v = $("#" + k, HTMLSelectElement).value.trim();
    if (v) {
      params.set(k, v);
    }
  });
  status.textContent = t("loading");
  apiJson("/api/recordings?" + params, tok)
    .then((body) => {
      list.textContent = "";
      body.recordings.forEach((/** @type {any} */ rec) => {
        remember(rec);
        list.appendChild(card(rec));
      });
      FILTERS.forEach(fillSelect);
      status.textContent = body.recordings.length ? "" : t("empty");
    })
    .catch((e) => {
      status.textContent = t("failed") + e.message;
    });
}

function main() {
  applyI18n(t);
  $("#filters").addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });
  FILTERS.forEach((id) => $("#" + id).addEventListener("change", load));
  window.libraryState = () => ({
    count: document.querySelectorAll("#list .card").length,
    status: $("#status").textContent || ""
  });
  load();
}

main();
