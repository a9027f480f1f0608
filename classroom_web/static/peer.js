// @ts-check
/* Peer connections negotiated over the page's socket: MediaSession (one RTCPeerConnection:
 * offer, answer, ice, timeouts), MediaLink (its lifetime: retry with backoff), OfferLedger
 * (which offer an error answers) and preferCodec. Every connection made here is announced
 * to protocol.js onPeerConnection watchers.
 */
import {
  TWO_WAY_TYPES, backoffDelay, registerPeerConnection, unregisterPeerConnection
} from "./protocol.js";

/** @typedef {import("./protocol.js").Signal} Signal */
/** @typedef {import("./stats.js").StatsTotals} StatsTotals */

/**
 * @typedef {object} MediaSessionOptions
 * @property {string} purpose "publish" | "grid" | "subscribe" | "uplink"
 * @property {Signal} signal
 * @property {RTCIceServer[]} [iceServers]
 * @property {StatsTotals} [stats] totals this connection's counters go into
 * @property {(pc: RTCPeerConnection) => void} setup adds tracks / transceivers
 * @property {(event: RTCTrackEvent) => void} [onTrack]
 * @property {() => void} [onConnected]
 * @property {(reason: string) => void} [onFail] at most once
 * @property {(state: RTCPeerConnectionState) => void} [onStateChange]
 * @property {(session: MediaSession) => void} [onOfferSent] the offer left on the socket
 * @property {(errorCode: number) => void} [onTurnRefused] a TURN server refused the
 *   credentials (at most once)
 */

/**
 * Resolves true once ICE gathering completes, false after `ms`.
 * @param {RTCPeerConnection} pc @param {number} ms @returns {Promise<boolean>}
 */
function waitIceGathering(pc, ms) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") {
      resolve(true);
      return;
    }
    const check = () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve(true);
      }
    };
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", check);
      resolve(false);
    }, ms);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/**
 * One peer connection negotiated over the signaling socket. It calls onFail at most once:
 * on "failed", on "disconnected" for more than 3 s, when no answer arrives within 10 s, or
 * when ICE does not connect within 20 s of the answer.
 */
export class MediaSession {
  /** @param {MediaSessionOptions} options */
  constructor(options) {
    this.options = options;
    this.purpose = options.purpose;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {import("./protocol.js").PeerEntry | null} */
    this.entry = null;
    this.closed = false;
    this.failed = false;
    this.offerSent = false;
    this.connected = false;
    this.turnRefused = false; // a TURN server refused this connection's credentials
    /** @type {Record<string, number>} */
    this.timers = {};
  }

  /** @returns {Promise<void>} */
  start() {
    const opts = this.options;
    /** @type {RTCPeerConnection} */
    let pc;
    try {
      // "balanced": aiortc (the relay) answering a Chrome max-bundle offer never completes
      // DTLS once the relay uses max-bundle itself (needed for several m-lines of a kind);
      // the relay's answer bundles everything onto one transport either way.
      pc = new RTCPeerConnection({ iceServers: opts.iceServers || [], bundlePolicy: "balanced" });
    } catch (e) {
      this._fail("pc_error");
      return Promise.resolve();
    }
    this.pc = pc;
    if (opts.stats) {
      opts.stats.track(pc);
    }
    pc.ontrack = (event) => {
      if (!this.closed && opts.onTrack) {
        opts.onTrack(event);
      }
    };
    pc.onicecandidate = (event) => {
      if (this.closed || !this.offerSent) {
        return; // candidates gathered before the offer went out are in its SDP
      }
      const c = event.candidate;
      /** @type {import("./protocol.js").Message} */
      const msg = { type: "ice", purpose: this.purpose, candidate: "", sdpMid: "0", sdpMLineIndex: 0 };
      if (c && c.candidate) {
        msg.candidate = c.candidate;
        msg.sdpMid = c.sdpMid;
        msg.sdpMLineIndex = c.sdpMLineIndex;
      }
      opts.signal.send(msg);
    };
    pc.onconnectionstatechange = () => this._onState();
    // A TURN server that refuses the credentials (wrong secret, expired): ICE goes on with
    // the other candidates; the page is told once so it can say so (onTurnRefused).
    pc.onicecandidateerror = (event) => {
      const url = event.url || "";
      if (this.closed || this.turnRefused || url.indexOf("turn") !== 0) {
        return;
      }
      if (event.errorCode === 401 || event.errorCode === 403 || event.errorCode === 431) {
        this.turnRefused = true;
        if (opts.onTurnRefused) {
          opts.onTurnRefused(event.errorCode);
        }
      }
    };
    try {
      opts.setup(pc);
    } catch (e) {
      this._fail("setup_error");
      return Promise.resolve();
    }
    this.entry = registerPeerConnection(pc, this.purpose);
    return pc
      .createOffer()
      .then((offer) => pc.setLocalDescription(offer))
      .then(() => waitIceGathering(pc, 2000))
      .then(() => {
        if (this.closed) {
          return;
        }
        const sent = opts.signal.send({
          type: "offer",
          purpose: this.purpose,
          sdp: pc.localDescription ? pc.localDescription.sdp : ""
        });
        if (!sent) {
          this._fail("socket_closed");
          return;
        }
        this.offerSent = true;
        if (opts.onOfferSent) {
          opts.onOfferSent(this);
        }
        this._timer("answer", 10000, "answer_timeout");
      })
      .catch(() => {
        this._fail("offer_error");
      });
  }

  /** @param {string} sdp @returns {Promise<void>} */
  handleAnswer(sdp) {
    const pc = this.pc;
    if (this.closed || !pc || pc.signalingState !== "have-local-offer") {
      return Promise.resolve();
    }
    this._clear("answer");
    this._timer("connect", 20000, "connect_timeout");
    return pc.setRemoteDescription({ type: "answer", sdp }).catch(() => {
      this._fail("bad_answer");
    });
  }

  _onState() {
    if (this.closed || !this.pc) {
      return;
    }
    const state = this.pc.connectionState;
    if (this.options.onStateChange) {
      this.options.onStateChange(state);
    }
    if (state === "connected") {
      this.connected = true;
      this._clear("connect");
      this._clear("disconnected");
      if (this.options.onConnected) {
        this.options.onConnected();
      }
    } else if (state === "disconnected") {
      this._timer("disconnected", 3000, "disconnected");
    } else if (state === "failed" || state === "closed") {
      this._fail(state);
    }
  }

  /** @param {string} name @param {number} ms @param {string} reason */
  _timer(name, ms, reason) {
    this._clear(name);
    this.timers[name] = window.setTimeout(() => {
      delete this.timers[name];
      this._fail(reason);
    }, ms);
  }

  /** @param {string} name */
  _clear(name) {
    if (this.timers[name]) {
      clearTimeout(this.timers[name]);
      delete this.timers[name];
    }
  }

  /** @param {string} reason */
  _fail(reason) {
    if (this.closed || this.failed) {
      return;
    }
    this.failed = true;
    if (this.options.onFail) {
      this.options.onFail(reason);
    }
  }

  /** @returns {RTCPeerConnectionState | "new"} */
  state() {
    return this.pc ? this.pc.connectionState : "new";
  }

  /** Stop for good; the connection is closed after a last stats reading. */
  close() {
    if (this.closed) {
      return;
    }
    this.closed = true;
    Object.values(this.timers).forEach((timer) => clearTimeout(timer));
    this.timers = {};
    const pc = this.pc;
    if (!pc) {
      return;
    }
    if (this.entry) {
      unregisterPeerConnection(this.entry);
    }
    pc.ontrack = pc.onicecandidate = pc.onconnectionstatechange = pc.onicecandidateerror = null;
    if (this.options.stats) {
      this.options.stats.retire(pc);
    } else {
      pc.close();
    }
  }
}

/**
 * The lifetime of one kind of connection on a page (teacher publish and grid, classroom
 * subscribe and uplink): the current MediaSession, a pending retry, the attempt count and
 * whether it is in trouble.
 */
export class MediaLink {
  /** @param {string} label for the console ("teacher: publish") */
  constructor(label) {
    this.label = label;
    /** @type {MediaSession | null} */
    this.media = null;
    /** @type {number | null} */
    this.retry = null;
    this.attempt = 0;
    this.trouble = false;
  }

  /**
   * A new connection of this link (the caller then sets up its state and calls start()):
   * its onTrack, onConnected and onFail run only while it is still the link's current one.
   * @param {MediaSessionOptions} options
   * @returns {MediaSession}
   */
  open(options) {
    this.cancelRetry();
    const { onTrack, onConnected, onFail } = options;
    const session = new MediaSession({
      ...options,
      onTrack: (event) => {
        if (session === this.media && onTrack) {
          onTrack(event);
        }
      },
      onConnected: () => {
        if (session === this.media && onConnected) {
          onConnected();
        }
      },
      onFail: (reason) => {
        if (session === this.media && onFail) {
          onFail(reason);
        }
      }
    });
    this.media = session;
    return session;
  }

  /** Cancel a pending retry (before starting anew by hand). */
  cancelRetry() {
    if (this.retry) {
      clearTimeout(this.retry);
      this.retry = null;
    }
  }

  /** Cancel a pending retry and close the current connection. */
  stop() {
    this.cancelRetry();
    if (this.media) {
      this.media.close();
      this.media = null;
    }
  }

  /**
   * Call `start` after the next backoff delay (the caller closed the connection).
   * @param {() => void} start @param {string} reason @param {number} [delay] a fixed delay
   */
  retryLater(start, reason, delay) {
    const wait = delay === undefined ? backoffDelay(this.attempt) : delay;
    this.trouble = true;
    this.attempt += 1;
    this.cancelRetry();
    this.retry = window.setTimeout(() => {
      this.retry = null;
      start();
    }, wait);
    console.info(this.label + " " + reason + ", retry in " + wait + " ms");
  }

  /** The current connection's state ("new" without one). */
  state() {
    return this.media ? this.media.state() : "new";
  }
}

/**
 * Offers in flight on one socket, oldest first. The server handles a socket's messages in
 * order, so an `error` with ref "offer" (and no purpose of its own) answers the oldest
 * offer still waiting; an `answer` names its purpose.
 */
export class OfferLedger {
  constructor() {
    /** @type {string[]} */
    this.pending = [];
  }

  /** @param {string} purpose */
  sent(purpose) {
    this.pending.push(purpose);
  }

  /** @param {string} purpose */
  answered(purpose) {
    const i = this.pending.indexOf(purpose);
    if (i >= 0) {
      this.pending.splice(i, 1);
    }
  }

  /**
   * The purpose an offer error is about (msg.purpose when the server says it).
   * @param {Record<string, any>} msg an error message @returns {string | null}
   */
  refused(msg) {
    if (msg && typeof msg.purpose === "string") {
      this.answered(msg.purpose);
      return msg.purpose;
    }
    return this.pending.length ? this.pending.shift() || null : null;
  }

  clear() {
    this.pending = [];
  }
}

/**
 * Which of the page's connections a server `error` is about: an offer error answers the
 * oldest offer in flight (or the purpose it names), an ice error names its purpose,
 * bad_sdp / media_failed without a ref are about `fallback`. `ignore`: nothing to do (a
 * two-way message an older server does not know, a late candidate of a refused connection).
 * @param {Record<string, any>} msg the error
 * @param {OfferLedger} ledger the page's offers in flight
 * @param {string} fallback the page's main connection ("publish", "subscribe")
 * @returns {{purpose: string | null, ignore: boolean}}
 */
export function errorTarget(msg, ledger, fallback) {
  const code = msg.code || "internal";
  if (code === "unknown_type" && TWO_WAY_TYPES.has(msg.ref)) {
    console.info(fallback + ": the server does not know " + msg.ref);
    return { purpose: null, ignore: true };
  }
  if (msg.ref === "offer") {
    return { purpose: ledger.refused(msg) || fallback, ignore: false };
  }
  if (msg.ref === "ice") {
    const purpose = typeof msg.purpose === "string" ? msg.purpose : null;
    return { purpose, ignore: !purpose };
  }
  if (code === "bad_sdp" || code === "media_failed") {
    return { purpose: msg.purpose || fallback, ignore: false };
  }
  return { purpose: null, ignore: false };
}

/**
 * Ask for one codec (plus RTX) on a transceiver, where the browser allows it. For a
 * receiving transceiver (receive = true) this also keeps the offer small: a Chrome video
 * m-line lists ~20 codecs (~4 KB), and a grid offer has 9 of them (offers are <= 48 KiB).
 * @param {RTCRtpTransceiver} transceiver
 * @param {string} kind "video" | "audio"
 * @param {string} name "VP8", "opus", ...
 * @param {boolean} [receive]
 */
export function preferCodec(transceiver, kind, name, receive) {
  try {
    const api = receive ? window.RTCRtpReceiver : window.RTCRtpSender;
    if (!transceiver.setCodecPreferences || !api || !api.getCapabilities) {
      return;
    }
    const caps = api.getCapabilities(kind);
    if (!caps || !caps.codecs) {
      return;
    }
    const want = (kind + "/" + name).toLowerCase();
    const chosen = caps.codecs.filter((c) => c.mimeType.toLowerCase() === want);
    const rtx = caps.codecs.filter((c) => c.mimeType.toLowerCase() === kind + "/rtx");
    if (chosen.length) {
      transceiver.setCodecPreferences(chosen.concat(rtx));
    }
  } catch (e) {
    /* the browser's default order (VP8 and Opus first in every browser we target) */
  }
}
