// @ts-check
/* What the live pages say besides their state: a passing notice (6 s), error codes in
 * words, why a camera is not available.
 */
import { FATAL_CODES } from "./protocol.js";
import { hasText, t } from "./i18n.js";
import { LIVE } from "./strings.js";

/** A notice shown for 6 s next to the page's status; `render` draws the page again. */
export class Notice {
  /** @param {() => void} render */
  constructor(render) {
    this.render = render;
    this.text = "";
    /** @type {number | null} */
    this.timer = null;
  }

  /** @param {string} text */
  show(text) {
    this.text = text;
    if (this.timer) {
      clearTimeout(this.timer);
    }
    this.timer = window.setTimeout(() => {
      this.text = "";
      this.timer = null;
      this.render();
    }, 6000);
    this.render();
  }
}

/** A server error code in words. @param {string} code */
export function errorText(code) {
  const key = "err_" + code;
  if (hasText(LIVE, key)) {
    return t(key);
  }
  if (FATAL_CODES.has(code)) {
    return t("invalid_link");
  }
  return t("err_other", { code });
}

/** The page's {title, detail} keys once it has stopped for good. */
/** @typedef {{title: string, detail: string}} Fatal */

/**
 * Why a live page cannot even start: no token in the link, or a browser without WebRTC.
 * @param {string} token @returns {Fatal | null}
 */
export function startProblem(token) {
  if (!token) {
    return { title: "no_token", detail: "no_token_detail" };
  }
  if (typeof RTCPeerConnection === "undefined") {
    return { title: "no_webrtc", detail: "wrong_page_detail" };
  }
  return null;
}
