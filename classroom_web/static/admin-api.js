// @ts-check
/* The admin console's calls to /api: the page's token as a bearer (protocol.js apiJson), files
 * saved through fetch (a download link cannot carry the token, and the token never goes into
 * a URL), and which errors mean "this server has no such API yet".
 */
import { download } from "./dom.js";
import { apiJson } from "./protocol.js";

/**
 * @typedef {Error & {code?: string, status?: number, detail?: Record<string, any>}} ApiError
 * @typedef {{
 *   get: (path: string) => Promise<any>,
 *   post: (path: string, body?: unknown, type?: string) => Promise<any>,
 *   put: (path: string, body: unknown) => Promise<any>,
 *   del: (path: string) => Promise<any>,
 *   save: (path: string, name: string) => Promise<void>
 * }} Api
 */

/**
 * The API of one token.
 * @param {string} token
 * @returns {Api}
 */
export function createApi(token) {
  return {
    get: (path) => apiJson(path, token),
    post: (path, body, type) => apiJson(path, token, { method: "POST", body: body === undefined ? {} : body, type }),
    put: (path, body) => apiJson(path, token, { method: "PUT", body }),
    del: (path) => apiJson(path, token, { method: "DELETE" }),
    save: (path, name) =>
      fetch(path, { headers: { Authorization: "Bearer " + token } }).then((resp) => {
        if (!resp.ok) {
          return resp.json().catch(() => /** @type {any} */ ({})).then((data) => {
            const error = (data && data.error) || {};
            throw Object.assign(new Error(error.message || String(resp.status)), {
              code: error.code || String(resp.status), status: resp.status, detail: error
            });
          });
        }
        return resp.blob().then((blob) => download(blob, name));
      })
  };
}

/**
 * True when the server has no such route (this build has not got that API): a 404 on a list
 * or a 405. A 404 naming a missing record has its own message, not aiohttp's "Not Found".
 * @param {ApiError} err
 */
export function notAvailable(err) {
  return (err.status === 404 && (err.message === "Not Found" || err.code === "404")) || err.status === 405;
}

/** A path segment. @param {string} id */
export function seg(id) {
  return encodeURIComponent(id);
}

/**
 * The list in a list answer: body[key], or body itself when it is an array.
 * @param {any} body @param {string} key
 * @returns {any[]}
 */
export function listOf(body, key) {
  if (Array.isArray(body)) {
    return body;
  }
  const list = body && (body[key] || body.items);
  return Array.isArray(list) ? list : [];
}
