// @ts-check
/* Language and texts: zh-CN by default, English with ?lang=en (the server fills the same
 * choice into <html lang>). The tables themselves are in strings.js.
 */
import { LIVE } from "./strings.js";

/** @typedef {import("./strings.js").StringTable} StringTable */
/** @typedef {(key: string, vars?: Record<string, string | number>) => string} Translate */

/** The page's query string (?lang=en, ?res=360 ...). */
export const params = new URLSearchParams(window.location.search);

/** "en" with ?lang=en, else "zh" (zh-CN, the default). */
export const lang = params.get("lang") === "en" ? "en" : "zh";

/** The BCP 47 tag of `lang`, for <html lang>. */
export const htmlLang = lang === "en" ? "en" : "zh-CN";

const own = Object.prototype.hasOwnProperty;

/**
 * A t(key, vars) over one table: the page's language, else Chinese, else the key itself;
 * {name} in the text is replaced by vars.name.
 * @param {StringTable} table
 * @returns {Translate}
 */
export function translator(table) {
  return function (key, vars) {
    const mine = table[lang];
    let text = own.call(mine, key) ? mine[key] : own.call(table.zh, key) ? table.zh[key] : key;
    if (vars) {
      text = text.replace(/\{(\w+)\}/g, (m, name) => (own.call(vars, name) ? String(vars[name]) : m));
    }
    return text;
  };
}

/**
 * True when `table` has a text for `key` (in Chinese, which every key has).
 * @param {StringTable} table @param {string} key
 */
export function hasText(table, key) {
  return own.call(table.zh, key);
}

/** t() of the live lesson pages (teach, class, answer, report). */
export const t = translator(LIVE);

/**
 * Set <html lang> and fill every [data-i18n] element's text (and [data-i18n-placeholder]
 * placeholders) from `tr`; a <title data-i18n> also sets document.title.
 * @param {Translate} [tr] the translator of the page's table (default: the live table)
 * @param {ParentNode} [root]
 */
export function applyI18n(tr = t, root = document) {
  document.documentElement.lang = htmlLang;
  root.querySelectorAll("[data-i18n]").forEach((node) => {
    node.textContent = tr(node.getAttribute("data-i18n") || "");
  });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((node) => {
    if (node instanceof HTMLInputElement) {
      node.placeholder = tr(node.getAttribute("data-i18n-placeholder") || "");
    }
  });
  const titled = document.querySelector("title[data-i18n]");
  if (titled) {
    document.title = titled.textContent || "";
  }
}
