// @ts-check
/* DOM helpers every page uses: a typed querySelector, an element builder, a file download. */

/**
 * The first element matching `selector`, checked to be a `type` (HTMLElement by default).
 * Throws when there is none: the pages' own markup is the contract, a missing element is a
 * bug to see at once, not a null to trip over later.
 * @template {Element} [T=HTMLElement]
 * @param {string} selector
 * @param {new (...args: any[]) => T} [type]
 * @param {ParentNode} [root]
 * @returns {T}
 */
export function $(selector, type, root = document) {
  const node = root.querySelector(selector);
  const want = type || HTMLElement;
  if (!(node instanceof want)) {
    throw new Error(`page markup: ${selector} is ${node ? node.tagName : "missing"}`);
  }
  return /** @type {T} */ (node);
}

/**
 * A new element: attrs are set as attributes (className as the class), text as textContent.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, string | number> | null} [attrs]
 * @param {string | number | null} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "className") {
      node.className = String(value);
    } else {
      node.setAttribute(key, String(value));
    }
  }
  if (text !== undefined && text !== null) {
    node.textContent = String(text);
  }
  return node;
}

/**
 * Save `blob` as a file named `name` (an <a download> pressed once).
 * @param {Blob} blob
 * @param {string} name
 */
export function download(blob, name) {
  const a = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
}

/**
 * play() that never rejects unhandled (autoplay refusals are handled where they matter).
 * @param {HTMLMediaElement} media
 */
export function playQuietly(media) {
  media.play().catch(() => {});
}
