// @ts-check
/* A student's phone (/join, or /join#code=... from the TV's QR code): the lesson code ->
 * POST /api/join (the code in the body, never in a URL the server sees) -> a student
 * token -> the answer page /answer/{lesson}#token=... */
import { $ } from "./dom.js";
import { applyI18n, lang, translator } from "./i18n.js";
import { ROOM } from "./strings-room.js";

const t = translator(ROOM);
applyI18n(t);
const form = $("#join-form", HTMLFormElement);
const codeInput = $("#code", HTMLInputElement);
const nameInput = $("#name", HTMLInputElement);
const note = $("#join-note");
const fromQr = new URLSearchParams(window.location.hash.replace(/^#/, "")).get("code");
if (fromQr) {
  codeInput.value = fromQr;
  history.replaceState(null, "", window.location.pathname + window.location.search);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  note.textContent = "";
  try {
    const resp = await fetch("/api/join", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code: codeInput.value.trim(), name: nameInput.value.trim() })
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const code = body.error && body.error.code;
      note.textContent = code === "rate_limited" ? t("join_limited") : code === "not_found" || code === "bad_message" ? t("join_bad") : t("join_failed", { error: (body.error && body.error.message) || resp.status });
      return;
    }
    window.location.assign(`${body.page}${lang === "en" ? "?lang=en" : ""}#token=${encodeURIComponent(body.token)}`);
  } catch (err) {
    note.textContent = t("join_failed", { error: String(err) });
  }
});
