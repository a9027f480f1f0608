// @ts-check
/* Quality as this page saw it (docs/quality.md): every 10 s a `quality` report on the socket.
 *
 * Loaded as a module by every page that plays media (/class, /teach; /answer has no peer
 * connection). It reads getStats() of every peer connection the page makes (protocol.js
 * onPeerConnection) and sends totals since the page loaded (never deltas): frames received
 * and decoded, freezes (inbound-rtp freezeCount, totalFreezesDuration), audio samples and
 * concealed samples, packets lost, plus the last interval's jitter-buffer delay
 * (jitterBufferDelay / jitterBufferEmittedCount, per kind), the selected candidate pair's
 * currentRoundTripTime and the page's tier. `epoch` is new at each page load, `seq` counts
 * the reports sent: the server turns totals into deltas, so a lost report is covered by the
 * next one and a repeated one counts once. A connection that closes keeps what it counted
 * (each stream's growth is added to the page's totals as it is seen).
 *
 * On the teacher console it also shows `quality-mark {peer_id, mark, reason}` on the
 * classroom's tile (data-quality="good|fair|poor" and a small badge with the reason).
 *
 * window.classroomQuality() returns {sent, refused, last, marks} for automated browsers.
 */

import { onPeerConnection, onServerMessage, pageIdentity, sendMessage } from "./protocol.js";

const DEFAULT_INTERVAL_MS = 10000;
/** An automated browser may set `window.CLASSROOM_QUALITY_INTERVAL_S` in an init script
 * (docs/page-hooks.md): reports every that many seconds, the first that long after the
 * load, whatever the welcome says; at least 5 (the server refuses reports 4.5 s apart). */
const FORCED_INTERVAL_S = Number(/** @type {any} */ (window).CLASSROOM_QUALITY_INTERVAL_S) || 0;
const FORCED_INTERVAL_MS = FORCED_INTERVAL_S >= 5 ? FORCED_INTERVAL_S * 1000 : 0;
/** Purposes whose candidate pair gives the page's RTT, best first. */
const RTT_PURPOSES = ["subscribe", "publish", "grid", "uplink"];
const MARK_TEXT = {
  zh: { good: "良好", fair: "一般", poor: "较差", freezes: "卡顿", audio_concealed: "声音断续",
    rtt: "延迟高", audio_only: "仅声音", jitter_buffer: "缓冲大", low_tier: "低清" },
  en: { good: "good", fair: "fair", poor: "poor", freezes: "freezes",
    audio_concealed: "broken audio", rtt: "high delay", audio_only: "audio only",
    jitter_buffer: "buffering", low_tier: "low tier" }
};

/**
 * @typedef {object} Totals
 * @property {number} frames_received
 * @property {number} frames_decoded
 * @property {number} freezes
 * @property {number} freeze_ms
 * @property {number} video_lost
 * @property {number} audio_samples
 * @property {number} audio_concealed
 * @property {number} audio_lost
 */
/** @typedef {{delay: number, emitted: number}} Jitter */
/** @typedef {{pc: RTCPeerConnection, purpose: string}} Watched */

/** @returns {Totals} */
function zeroTotals() {
  return { frames_received: 0, frames_decoded: 0, freezes: 0, freeze_ms: 0, video_lost: 0,
    audio_samples: 0, audio_concealed: 0, audio_lost: 0 };
}

/** A random id for this page load. */
function newEpoch() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** @param {unknown} v @returns {number} */
function num(v) {
  return typeof v === "number" && isFinite(v) && v > 0 ? v : 0;
}

class QualityReporter {
  constructor() {
    this.epoch = newEpoch();
    this.seq = 0;
    this.totals = zeroTotals();
    /** @type {Set<Watched>} */
    this.watched = new Set();
    /** what each stream had counted at the last poll: pc -> stat id -> counters
     * @type {WeakMap<RTCPeerConnection, Map<string, Record<string, number>>>} */
    this.seen = new WeakMap();
    /** @type {{audio: Jitter, video: Jitter}} this interval's jitter-buffer growth */
    this.jitter = { audio: { delay: 0, emitted: 0 }, video: { delay: 0, emitted: 0 } };
    /** @type {string | null} */
    this.tier = null;
    this.intervalMs = FORCED_INTERVAL_MS || DEFAULT_INTERVAL_MS;
    this.lastSent = performance.now();
    this.sent = 0;
    this.refused = 0;
    /** @type {Record<string, any> | null} */
    this.last = null;
    this.stopped = false;
    /** @type {Record<string, {mark: string, reason: string}>} */
    this.marks = {};
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.observing = false;
  }

  start() {
    onPeerConnection((entry) => {
      this.watched.add({ pc: entry.pc, purpose: entry.purpose });
    });
    onServerMessage((msg) => this.onMessage(msg));
    this.schedule();
  }

  schedule() {
    if (this.timer !== null) {
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.tick().finally(() => {
        if (!this.stopped) {
          this.schedule();
        }
      });
    }, this.intervalMs);
  }

  /** @param {Record<string, any>} msg @returns {boolean | void} */
  onMessage(msg) {
    if (msg.type === "welcome") {
      if (!FORCED_INTERVAL_MS && typeof msg.quality_interval === "number" &&
          msg.quality_interval >= 5) {
        this.intervalMs = msg.quality_interval * 1000;
      }
      if (Array.isArray(msg.quality_marks)) {
        this.marks = {};
        msg.quality_marks.forEach((m) => this.onMark(m));
      }
      return;
    }
    if (msg.type === "tier") {
      const me = pageIdentity().peer_id;
      if (typeof msg.tier === "string" && (!msg.peer_id || msg.peer_id === me)) {
        this.tier = msg.tier;
      }
      return;
    }
    if (msg.type === "quality-mark") {
      this.onMark(msg);
      return true;
    }
    if (msg.type === "error" && msg.ref === "quality") {
      this.refused += 1;
      if (msg.code === "unknown_type" || msg.code === "forbidden") {
        this.stopped = true; // an older server, or a role that does not report
      }
      return true; // never the page's error banner
    }
  }

  /** Poll every connection, then send one report. */
  async tick() {
    const rtts = /** @type {Record<string, number>} */ ({});
    let videoTracks = 0;
    let audioTracks = 0;
    for (const w of Array.from(this.watched)) {
      if (w.pc.connectionState === "closed") {
        this.watched.delete(w);
        continue;
      }
      /** @type {RTCStatsReport} */
      let report;
      try {
        report = await w.pc.getStats();
      } catch (e) {
        continue;
      }
      const counts = this.poll(w.pc, report);
      videoTracks += counts.video;
      audioTracks += counts.audio;
      if (counts.rtt !== null && !(w.purpose in rtts)) {
        rtts[w.purpose] = counts.rtt;
      }
    }
    const rttPurpose = RTT_PURPOSES.find((p) => p in rtts);
    this.send(videoTracks, audioTracks, rttPurpose ? rtts[rttPurpose] : null);
  }

  /**
   * Add each inbound stream's growth since the last poll to the page's totals.
   * @param {RTCPeerConnection} pc @param {RTCStatsReport} report
   * @returns {{video: number, audio: number, rtt: number | null}}
   */
  poll(pc, report) {
    let seen = this.seen.get(pc);
    if (!seen) {
      seen = new Map();
      this.seen.set(pc, seen);
    }
    let video = 0;
    let audio = 0;
    /** @type {any} */
    let pair = null;
    /** @type {any} */
    let transport = null;
    report.forEach((/** @type {any} */ s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        transport = s;
      }
    });
    report.forEach((/** @type {any} */ s) => {
      if (s.type === "candidate-pair") {
        const selected = transport ? s.id === transport.selectedCandidatePairId
          : s.nominated && s.state === "succeeded";
        if (selected) {
          pair = s;
        }
        return;
      }
      if (s.type !== "inbound-rtp" || (s.kind !== "video" && s.kind !== "audio")) {
        return;
      }
      const now = s.kind === "video"
        ? { frames_received: num(s.framesReceived), frames_decoded: num(s.framesDecoded),
          freezes: num(s.freezeCount), freeze_ms: num(s.totalFreezesDuration) * 1000,
          video_lost: num(s.packetsLost) }
        : { audio_samples: num(s.totalSamplesReceived),
          audio_concealed: num(s.concealedSamples), audio_lost: num(s.packetsLost) };
      const jitter = { delay: num(s.jitterBufferDelay), emitted: num(s.jitterBufferEmittedCount) };
      const before = seen.get(s.id) || {};
      const totals = /** @type {Record<string, number>} */ (/** @type {unknown} */ (this.totals));
      Object.keys(now).forEach((k) => {
        const grew = now[/** @type {keyof typeof now} */ (k)] - (before[k] || 0);
        if (grew > 0) {
          totals[k] += grew;
        }
      });
      const j = this.jitter[/** @type {"audio" | "video"} */ (s.kind)];
      const dDelay = jitter.delay - (before.jb_delay || 0);
      const dEmitted = jitter.emitted - (before.jb_emitted || 0);
      if (dDelay >= 0 && dEmitted > 0) {
        j.delay += dDelay;
        j.emitted += dEmitted;
      }
      seen.set(s.id, { ...now, jb_delay: jitter.delay, jb_emitted: jitter.emitted });
      if (s.kind === "video") {
        video += 1;
      } else {
        audio += 1;
      }
    });
    const rtt = pair && typeof pair.currentRoundTripTime === "number"
      ? pair.currentRoundTripTime : null;
    return { video, audio, rtt };
  }

  /** @param {number} videoTracks @param {number} audioTracks @param {number | null} rtt */
  send(videoTracks, audioTracks, rtt) {
    if (this.stopped) {
      return;
    }
    const now = performance.now();
    /** @param {Jitter} j */
    const mean = (j) => (j.emitted > 0 ? Math.round((j.delay / j.emitted) * 10000) / 10 : null);
    const t = this.totals;
    const msg = {
      type: "quality",
      epoch: this.epoch,
      seq: this.seq + 1,
      interval_ms: Math.round(now - this.lastSent),
      // a classroom starts on the top tier; `tier` events move it (teacher: no tier)
      tier: this.tier || (pageIdentity().role === "classroom" && videoTracks > 0 ? "high" : null),
      video_tracks: Math.min(videoTracks, 64),
      audio_tracks: Math.min(audioTracks, 64),
      frames_received: Math.round(t.frames_received),
      frames_decoded: Math.round(t.frames_decoded),
      freezes: Math.round(t.freezes),
      freeze_ms: Math.round(t.freeze_ms),
      video_lost: Math.round(t.video_lost),
      audio_samples: Math.round(t.audio_samples),
      audio_concealed: Math.min(Math.round(t.audio_concealed), Math.round(t.audio_samples)),
      audio_lost: Math.round(t.audio_lost),
      jitter_audio_ms: mean(this.jitter.audio),
      jitter_video_ms: mean(this.jitter.video),
      rtt_ms: rtt === null ? null : Math.min(Math.round(rtt * 10000) / 10, 60000)
    };
    if (!sendMessage(msg)) {
      return; // socket down: the next report carries these totals
    }
    this.seq += 1;
    this.sent += 1;
    this.last = msg;
    this.lastSent = now;
    this.jitter = { audio: { delay: 0, emitted: 0 }, video: { delay: 0, emitted: 0 } };
  }

  /** A classroom tile's mark (teacher console). @param {Record<string, any>} m */
  onMark(m) {
    if (typeof m.peer_id !== "string") {
      return;
    }
    if (!this.observing) {
      this.watchTiles();
    }
    if (m.mark) {
      this.marks[m.peer_id] = { mark: String(m.mark), reason: String(m.reason || "") };
    } else {
      delete this.marks[m.peer_id];
    }
    this.paint(m.peer_id);
  }

  /** Show one tile's mark (tiles come and go: the grid observer repaints new ones). */
  paint(/** @type {string} */ peer) {
    const tile = document.querySelector('[data-tile="' + CSS.escape(peer) + '"]');
    if (!tile) {
      return;
    }
    const mark = this.marks[peer];
    let badge = /** @type {HTMLElement | null} */ (tile.querySelector(".tile-quality"));
    if (!mark) {
      tile.removeAttribute("data-quality");
      if (badge) {
        badge.remove();
      }
      return;
    }
    const lang = (document.documentElement.lang || "").startsWith("en") ? "en" : "zh";
    const words = /** @type {Record<string, string>} */ (MARK_TEXT[lang]);
    tile.setAttribute("data-quality", mark.mark);
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "tile-quality";
      (tile.querySelector(".tile-top") || tile).appendChild(badge);
    }
    badge.setAttribute("data-quality", mark.mark);
    badge.textContent = (words[mark.mark] || mark.mark) +
      (mark.reason ? " · " + (words[mark.reason] || mark.reason) : "");
    badge.title = mark.reason;
  }

  /** Repaint marks on tiles the console (re)creates. */
  watchTiles() {
    this.observing = true;
    new MutationObserver(() => {
      Object.keys(this.marks).forEach((peer) => {
        const tile = document.querySelector('[data-tile="' + CSS.escape(peer) + '"]');
        if (tile && !tile.querySelector(".tile-quality")) {
          this.paint(peer);
        }
      });
    }).observe(document.body, { childList: true, subtree: true });
  }
}

const reporter = new QualityReporter();
reporter.start();

/** For automated browsers: what this page reported. */
// @ts-ignore - a page hook (DESIGN.md "Page hooks for automated browsers")
window.classroomQuality = () => ({ sent: reporter.sent, refused: reporter.refused,
  last: reporter.last, marks: { ...reporter.marks }, epoch: reporter.epoch });
