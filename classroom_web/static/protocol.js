// @ts-check
/* The protocol client: the page's one /ws socket and what other modules may plug into.
 *
 * A page creates one Signal (teach.js, class.js, answer.js). Signal sends hello {token,
 * lesson} on every (re)connect, keeps the link alive (ping after 10 s of silence, a socket
 * silent 30 s is dropped), reconnects by itself with backoff 0.5 s doubling to 5 s (at once
 * when the browser comes back online), renews its session token at half its life (refresh
 * {token}; a reconnect uses the session token while it is valid) and stops for good on a
 * fatal error (invalid_token, token_expired, wrong_lesson) or a `removed` close (4001).
 * A `redirect` at hello (a node over its limit: docs/cascade.md "Placement") moves the
 * socket to the named node's /ws at once (the page stays where it is, its token in its
 * fragment); its hello there says `redirected`, so that node accepts it. Later reconnects
 * go to the node that welcomed the page (`reconnect`: it stays placed); a node it was sent
 * to that never welcomes it, or stops answering (its drop and one more try), sends it back
 * to its own.
 * A node that stops answering (its socket dropped and one more try failed) is left for
 * the next of the other nodes its last welcome named (`fallback_sockets`, the cascade's
 * live nodes), with `redirected`; each of them is tried like a redirect's target.
 *
 * Plugging in (for feature modules such as quality.js and glass.js; no page change needed
 * beyond loading the module with <script type="module">, before or after the page script):
 *
 *   import { onPeerConnection, peerConnections, sendMessage, onServerMessage, pageRole,
 *            serverNow } from "./protocol.js";
 *
 *   onPeerConnection((entry) => { ... })  every RTCPeerConnection the page makes, as
 *       {pc, purpose, role}: those alive now at once, then each new one when it is created
 *       (before its offer). purpose: "publish" | "grid" (teacher), "subscribe" | "uplink"
 *       (classroom). Returns a function that unsubscribes.
 *   peerConnections()   the live ones now (a closed connection leaves the list; its
 *       pc.connectionState is "closed").
 *   sendMessage(msg)    send a JSON message on the page's socket; false when it is not open
 *       (nothing is queued: send again later).
 *   onServerMessage((msg) => boolean | void)  every message from the server, welcome and
 *       refreshed included, before the page sees it; return true to take it (the page then
 *       does not handle it: e.g. an error whose ref is your own message type).
 *   pageRole()          the role of the last welcome ("teacher", "classroom", "student"),
 *       null before one. pageIdentity() gives {role, peer_id, lesson} of that welcome.
 *   serverNow()         the server's clock (seconds) as this page estimates it.
 *
 * Import it as "./protocol.js" exactly (no ?v= query: another URL is another module
 * instance, with an empty registry).
 */

/** A message on the socket: an object with a string type. */
/** @typedef {{type: string, [key: string]: any}} Message */
/**
 * @typedef {object} PeerEntry
 * @property {RTCPeerConnection} pc
 * @property {string} purpose
 * @property {string | null} role the page's role when the connection was made
 */

/** Error codes after which retrying cannot help: the link itself is bad. */
export const FATAL_CODES = new Set(["invalid_token", "token_expired", "wrong_lesson"]);
/** WebSocket close code after `removed {}` (docs/two-way.md). */
export const REMOVED_CLOSE_CODE = 4001;

/** Messages of the two-way lesson an older server does not know (unknown_type: quiet). */
export const TWO_WAY_TYPES = new Set([
  "uplink-state", "grid-view", "call-on-stage", "leave-stage", "mute-classroom",
  "remove-classroom", "share"
]);

/* ------------------------------------------------------------------ the link */

/** The token from the fragment (#token=...). The fragment stays, so a reload still works. */
export function readToken() {
  const hash = window.location.hash.replace(/^#/, "");
  if (!hash) {
    return "";
  }
  const value = new URLSearchParams(hash).get("token");
  return value ? value.trim() : "";
}

/** The last path segment: the lesson of /teach/{lesson}, /class/{lesson}, ... */
export function lessonFromPath() {
  const parts = window.location.pathname.split("/").filter(Boolean);
  const last = parts[parts.length - 1] || "";
  try {
    return decodeURIComponent(last);
  } catch (e) {
    return last;
  }
}

/**
 * The claims of a token, {} when they are not readable. The page never verifies them: it
 * uses them only to shape what it shows (the server decides what the token may do).
 * @param {string} token @returns {Record<string, any>}
 */
export function tokenClaims(token) {
  try {
    const body = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(body));
    return claims && typeof claims === "object" ? claims : {};
  } catch (e) {
    return {};
  }
}

/** The `sub` claim of a token, "" when it is not readable. @param {string} token */
export function tokenSubject(token) {
  return String(tokenClaims(token).sub || "");
}

/**
 * fetch() of the HTTP API with the page's token as a bearer; resolves to the JSON body,
 * rejects with an Error whose `code` is the API's error code (or the HTTP status), `status`
 * the HTTP status and `detail` the whole `error` object (e.g. a conflict's `other`).
 * 204 resolves to {}; another body that is not JSON (a route this server lacks: aiohttp's
 * text 404) rejects with code = the status.
 * @param {string} path
 * @param {string} token
 * @param {{method?: string, body?: unknown, type?: string}} [options] a string or Blob (a
 *   chosen file) body is sent as it is, with Content-Type `type` (default application/json)
 * @returns {Promise<any>}
 */
export function apiJson(path, token, options = {}) {
  /** @type {RequestInit & {headers: Record<string, string>}} */
  const init = { method: options.method || "GET", headers: { Authorization: "Bearer " + token } };
  if (options.body !== undefined) {
    init.headers["Content-Type"] = options.type || "application/json";
    const raw = typeof options.body === "string" || options.body instanceof Blob;
    init.body = raw ? /** @type {string | Blob} */ (options.body) : JSON.stringify(options.body);
  }
  return fetch(path, init).then((resp) =>
    resp.json().catch(() => /** @type {any} */ (null)).then((data) => {
      if (resp.status === 204) {
        return {};
      }
      if (!resp.ok || data === null) {
        const error = (data && data.error) || {};
        throw Object.assign(new Error(error.message || String(resp.status)), {
          code: error.code || String(resp.status), status: resp.status, detail: error
        });
      }
      return data;
    })
  );
}

/**
 * The lesson state and info a welcome or lesson message carries.
 * @param {Record<string, any>} msg
 * @returns {{state: string | undefined, info: {title?: string, state?: string} | undefined}}
 */
export function lessonOf(msg) {
  const info = msg.lesson_info || undefined;
  return { state: msg.lesson_state || (info && info.state), info };
}

/** The delay before reconnect number `attempt` (0, 1, ...): 0.5 s doubling to 5 s. @param {number} attempt */
export function backoffDelay(attempt) {
  return Math.min(5000, 500 * Math.pow(2, attempt));
}

function wsUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return scheme + "//" + window.location.host + "/ws";
}

/** Failed tries of a node that had welcomed the page (its drop counts) before the page
 * tries another: the next other node for its own, its own for one it was placed on. */
const FAILOVER_AFTER = 2;

/**
 * The socket URL of a `redirect` if the page may follow it, else null: ws/wss only (wss
 * on an https page), a path ending in /ws, no user info, query or fragment.
 * @param {Record<string, any>} msg
 * @returns {string | null}
 */
export function redirectTarget(msg) {
  let url;
  try {
    url = new URL(typeof msg.ws_url === "string" ? msg.ws_url : "");
  } catch (e) {
    return null;
  }
  const secure = window.location.protocol === "https:";
  if (url.protocol !== "wss:" && (secure || url.protocol !== "ws:")) {
    return null;
  }
  if (url.username || url.password || url.search || url.hash || !/\/ws$/.test(url.pathname)) {
    return null;
  }
  return url.href;
}

/** The URL of the page's socket now (another node's after a redirect), null without one. */
export function socketUrl() {
  return pageSignal && pageSignal.ws ? pageSignal.url : null;
}

/* ------------------------------------------------------------------ the registry */

/** @type {Signal | null} */
let pageSignal = null;
/** @type {{role: string | null, peer_id: string | null, lesson: string | null}} */
const identity = { role: null, peer_id: null, lesson: null };
let clockOffset = 0;
/** @type {Set<PeerEntry>} */
const livePeers = new Set();
/** @type {Set<(entry: PeerEntry) => void>} */
const peerWatchers = new Set();
/** @type {Array<(msg: Message) => boolean | void>} */
const messageWatchers = [];
/** @type {Set<(open: boolean) => void>} */
const socketWatchers = new Set();

/**
 * Call `cb` for every live peer connection now and for each new one.
 * @param {(entry: PeerEntry) => void} cb
 * @returns {() => void} unsubscribe
 */
export function onPeerConnection(cb) {
  peerWatchers.add(cb);
  livePeers.forEach((entry) => callSafely(cb, entry));
  return () => {
    peerWatchers.delete(cb);
  };
}

/** The page's live peer connections. @returns {PeerEntry[]} */
export function peerConnections() {
  return Array.from(livePeers);
}

/**
 * Send on the page's socket.
 * @param {Record<string, any>} msg an object with a string `type`
 * @returns {boolean} false when the socket is not open
 */
export function sendMessage(msg) {
  return pageSignal ? pageSignal.send(msg) : false;
}

/**
 * See every server message before the page does; return true from `cb` to take it.
 * @param {(msg: Message) => boolean | void} cb
 * @returns {() => void} unsubscribe
 */
export function onServerMessage(cb) {
  messageWatchers.push(cb);
  return () => {
    const i = messageWatchers.indexOf(cb);
    if (i >= 0) {
      messageWatchers.splice(i, 1);
    }
  };
}

/**
 * Call `cb(false)` each time the page's socket drops (a reconnect follows by itself); the
 * next `welcome` (onServerMessage) says it is back. Badges use it not to claim "on air".
 * @param {(open: boolean) => void} cb
 * @returns {() => void} unsubscribe
 */
export function onSocketState(cb) {
  socketWatchers.add(cb);
  return () => {
    socketWatchers.delete(cb);
  };
}

/** The role of the last welcome, null before one. */
export function pageRole() {
  return identity.role;
}

/** Role, peer id and lesson of the last welcome (nulls before one). */
export function pageIdentity() {
  return { ...identity };
}

/** The server's clock in seconds, from server_time of welcome / refreshed. */
export function serverNow() {
  return Date.now() / 1000 + clockOffset;
}

/**
 * A peer connection came (peer.js MediaSession): tell the watchers.
 * @param {RTCPeerConnection} pc @param {string} purpose
 * @returns {PeerEntry}
 */
export function registerPeerConnection(pc, purpose) {
  const entry = { pc, purpose, role: identity.role };
  livePeers.add(entry);
  peerWatchers.forEach((cb) => callSafely(cb, entry));
  return entry;
}

/** The connection of `entry` is closed: it leaves the live list. @param {PeerEntry} entry */
export function unregisterPeerConnection(entry) {
  livePeers.delete(entry);
}

/**
 * @template A
 * @param {(arg: A) => unknown} fn @param {A} arg
 * @returns {unknown}
 */
function callSafely(fn, arg) {
  try {
    return fn(arg);
  } catch (e) {
    console.error("classroom: a page module failed", e);
    return undefined;
  }
}

/** True when a watcher took `msg`. @param {Message} msg */
function taken(msg) {
  for (const cb of messageWatchers.slice()) {
    if (callSafely(cb, msg) === true) {
      return true;
    }
  }
  return false;
}

/* ------------------------------------------------------------------ Signal */

/**
 * @typedef {object} SignalOptions
 * @property {string} token the link's token
 * @property {string} lesson
 * @property {(welcome: Message) => void} [onWelcome] after every welcome (each reconnect)
 * @property {(msg: Message) => void} [onMessage] every other message (refreshed included)
 * @property {() => void} [onClose] the socket dropped; a reconnect follows by itself
 * @property {(code: string, msg: Message | null) => void} [onFatal] stopped for good
 */

/** The page's signaling socket (one per page; see the top of this file). */
export class Signal {
  /** @param {SignalOptions} options */
  constructor(options) {
    this.token = options.token;
    this.lesson = options.lesson;
    this.onMessage = options.onMessage || (() => {});
    this.onWelcome = options.onWelcome || (() => {});
    this.onClose = options.onClose || (() => {});
    this.onFatal = options.onFatal || (() => {});
    /** @type {WebSocket | null} */
    this.ws = null;
    this.attempt = 0;
    this.welcomed = false;
    this.everWelcomed = false;
    this.stopped = false;
    /** @type {string | null} */
    this.fatalCode = null;
    /** @type {number | null} */
    this.retryTimer = null;
    this.lastHeard = 0;
    /** @type {number | null} */
    this.keepaliveTimer = null;
    /** @type {number | null} renews the session token (see _renewed) */
    this.refreshTimer = null;
    /** @type {string | null} */
    this.sessionToken = null;
    this.sessionExpires = 0;
    this.serverOffset = 0;
    /** the URL of the socket now (or last) opened */
    this.url = "";
    /** @type {string | null} the socket URL a `redirect` placed the page on (null: its own) */
    this.placedUrl = null;
    /** redirects followed since the last welcome (hello says it: the target accepts) */
    this.hops = 0;
    /** @type {string | null} the socket URL of the last welcome (a reconnect stays there) */
    this.welcomedAt = null;
    /** failed tries of placedUrl since its last welcome */
    this.placedFailures = 0;
    /** @type {string[]} other nodes' sockets the last welcome named (failover targets) */
    this.fallbacks = [];
    /** the next of them to try */
    this.fallbackIndex = 0;
    /** failed tries of the page's own node in a row (a drop counts) */
    this.ownFailures = 0;
    /** a welcomed socket dropped and no other node has been tried since */
    this.freshDrop = false;
    pageSignal = this;
    window.addEventListener("online", () => {
      if (this.retryTimer && !this.stopped) {
        clearTimeout(this.retryTimer);
        this.retryTimer = null;
        this.connect();
      }
    });
  }

  connect() {
    if (this.stopped) {
      return;
    }
    /** @type {WebSocket} */
    let ws;
    const url = this.placedUrl || wsUrl();
    this.url = url;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this._failed(false); // e.g. another node's socket refused by the page's CSP
      this._scheduleRetry();
      return;
    }
    this.ws = ws;
    this.welcomed = false;
    this.lastHeard = Date.now();
    ws.onopen = () => {
      if (ws !== this.ws) {
        return;
      }
      this.lastHeard = Date.now();
      /** @type {Record<string, any>} */
      const hello = { type: "hello", token: this._helloToken(), lesson: this.lesson };
      if (this.hops > 0) {
        hello.redirected = Math.min(this.hops, 4);
      }
      if (this.welcomedAt === url) {
        hello.reconnect = true;
      }
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws) {
        return;
      }
      this.lastHeard = Date.now();
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (msg && typeof msg.type === "string") {
        this._received(msg);
      }
    };
    ws.onclose = (event) => {
      if (ws === this.ws && event && event.code === REMOVED_CLOSE_CODE) {
        // the teacher removed this classroom: never reconnect by itself
        this.fatalCode = "removed";
        this.stop();
        this.onFatal("removed", null);
        return;
      }
      this._dropped(ws);
    };
    ws.onerror = () => {
      /* onclose follows */
    };
    if (!this.keepaliveTimer) {
      this.keepaliveTimer = window.setInterval(() => this._keepalive(), 5000);
    }
  }

  /** @param {Message} msg */
  _received(msg) {
    if (msg.type === "redirect" && !this.welcomed) {
      this._redirect(msg);
      return;
    }
    if (msg.type === "welcome") {
      this.welcomed = true;
      this.everWelcomed = true;
      this.attempt = 0;
      this.hops = 0;
      this.welcomedAt = this.url;
      this.placedFailures = 0;
      this.ownFailures = 0;
      this.fallbacks = Array.isArray(msg.fallback_sockets)
        ? msg.fallback_sockets.map((u) => redirectTarget({ ws_url: u })).filter((u) => u && u !== this.url)
        : [];
      identity.role = typeof msg.role === "string" ? msg.role : null;
      identity.peer_id = typeof msg.peer_id === "string" ? msg.peer_id : null;
      identity.lesson = this.lesson;
      this._renewed(msg);
      if (!taken(msg)) {
        this.onWelcome(msg);
      }
      return;
    }
    if (msg.type === "refreshed") {
      this._renewed(msg); // pages take its fresh ice_servers (TURN credentials)
    } else if (msg.type === "error" && FATAL_CODES.has(msg.code)) {
      this.fatalCode = msg.code;
      this.stop();
      this.onFatal(msg.code, msg);
      return;
    }
    if (!taken(msg)) {
      this.onMessage(msg);
    }
  }

  /**
   * Token renewal (docs/security.md "Token lifetime"): welcome and refreshed carry a
   * short-lived session_token of this page's identity; the page sends refresh {token} with
   * it at half its life, so the socket (and a reconnect, which uses it while valid) outlives
   * the link's token. It is kept in memory only, never in the URL or storage.
   * @param {Message} msg
   */
  _renewed(msg) {
    if (this.refreshTimer) {
      clearTimeout(this.refreshTimer);
      this.refreshTimer = null;
    }
    if (typeof msg.server_time === "number") {
      clockOffset = msg.server_time - Date.now() / 1000;
    }
    if (!msg.session_token || typeof msg.server_time !== "number") {
      return;
    }
    this.sessionToken = msg.session_token;
    this.serverOffset = msg.server_time - Date.now() / 1000;
    this.sessionExpires = msg.session_expires;
    const delay = Math.max(1000, ((msg.session_expires - msg.server_time) * 1000) / 2);
    this.refreshTimer = window.setTimeout(() => {
      this.refreshTimer = null;
      this.send({ type: "refresh", token: this.sessionToken });
    }, delay);
  }

  /** The session token while it has some life left, else the link's own token. */
  _helloToken() {
    const now = Date.now() / 1000 + (this.serverOffset || 0);
    if (this.sessionToken && this.sessionExpires - 2 > now) {
      return this.sessionToken;
    }
    return this.token;
  }

  /** Application-level ping: notices a dead link that never delivered a TCP close. */
  _keepalive() {
    const ws = this.ws;
    if (!ws || this.stopped) {
      return;
    }
    const silent = Date.now() - this.lastHeard;
    if (ws.readyState === WebSocket.CONNECTING && silent > 10000) {
      this._dropped(ws);
      return;
    }
    if (ws.readyState !== WebSocket.OPEN) {
      return;
    }
    if (silent > 30000) {
      this._dropped(ws);
      return;
    }
    if (this.welcomed && silent > 10000) {
      this.send({ type: "ping", ts: Date.now() });
    }
  }

  /**
   * Follow a `redirect`: this socket closes and the page's next one opens at the node it
   * names, at once (a target the page may not open: its own node again, which accepts a
   * hello that says `redirected`).
   * @param {Message} msg
   */
  _redirect(msg) {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch (e) {
        /* already closed */
      }
    }
    this.hops += 1;
    this.placedUrl = redirectTarget(msg);
    this.placedFailures = 0;
    this.welcomedAt = null; // a new placement: a node that welcomed the page before is past
    this.connect();
  }

  /**
   * A socket to the node a redirect or a failover placed the page on failed: a node that
   * never welcomed the page (down, or not allowed by the page's CSP) is left at once, one
   * that did after FAILOVER_AFTER failures (the page's own node places it again).
   * @param {boolean} welcomed whether that socket had been welcomed
   */
  _placedFailed(welcomed) {
    if (!this.placedUrl) {
      return;
    }
    this.placedFailures += 1;
    if (!welcomed && this.welcomedAt !== this.placedUrl) {
      this.placedUrl = null; // hops stays: the page's own node accepts it
      this._soon();
    } else if (this.placedFailures >= FAILOVER_AFTER) {
      this.placedUrl = null;
      this.hops = 0; // a fresh placement
      this._soon();
    }
  }

  /** Leaving a node: the next try comes soon if the page was connected until just now
   * (while every node is down the backoff keeps growing, to 5 s). */
  _soon() {
    if (this.freshDrop) {
      this.attempt = 0;
      this.freshDrop = false;
    }
  }

  /**
   * A socket failed (dropped, or never opened): count it against the node it was to.
   * @param {boolean} welcomed whether that socket had been welcomed
   */
  _failed(welcomed) {
    if (this.placedUrl) {
      this._placedFailed(welcomed);
    } else {
      this.ownFailures += 1;
    }
  }

  /**
   * The page's own node failed FAILOVER_AFTER times in a row: the next socket goes to
   * the next other node its last welcome named (said `redirected`: that node accepts it),
   * soon (the backoff starts again). Nothing when it names none.
   */
  _failover() {
    if (this.placedUrl || this.ownFailures < FAILOVER_AFTER || !this.fallbacks.length) {
      return;
    }
    this.placedUrl = this.fallbacks[this.fallbackIndex % this.fallbacks.length];
    this.fallbackIndex += 1;
    this.hops = 1;
    this.placedFailures = 0;
    this.ownFailures = 0;
    this._soon();
  }

  /** @param {WebSocket} ws */
  _dropped(ws) {
    if (ws !== this.ws) {
      return;
    }
    if (this.welcomed) {
      this.freshDrop = true;
    }
    this._failed(this.welcomed);
    this.ws = null;
    this.welcomed = false;
    if (this.refreshTimer) {
      clearTimeout(this.refreshTimer); // the next welcome schedules it again
      this.refreshTimer = null;
    }
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close();
    } catch (e) {
      /* already closed */
    }
    socketWatchers.forEach((cb) => callSafely(cb, false));
    this.onClose();
    this._scheduleRetry();
  }

  _scheduleRetry() {
    if (this.stopped || this.retryTimer) {
      return;
    }
    this._failover();
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  /** @param {Record<string, any>} msg @returns {boolean} false when the socket is not open */
  send(msg) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return false;
    }
    ws.send(JSON.stringify(msg));
    return true;
  }

  stop() {
    this.stopped = true;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    if (this.keepaliveTimer) {
      clearInterval(this.keepaliveTimer);
      this.keepaliveTimer = null;
    }
    if (this.refreshTimer) {
      clearTimeout(this.refreshTimer);
      this.refreshTimer = null;
    }
    const ws = this.ws;
    this.ws = null;
    this.welcomed = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch (e) {
        /* ignore */
      }
    }
  }
}
