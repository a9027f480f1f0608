// @ts-check
/* The one media watchdog of the pages that show remote media (issue 14 item 6, "honest
 * states"): the classroom TV (class.js, the teacher's picture and sound) and the teacher's
 * grid tiles (grid.js, one per slot). A connection can be "connected" while nothing
 * arrives (an edge whose origin link froze, a publisher whose video stopped, a relay that
 * forwards nothing): the page must then say so, never "connected" or "live" over a black
 * screen, and recover by subscribing again.
 *
 * MediaWatch reads the counters of getStats() once a second (video framesDecoded, audio
 * bytesReceived of one receiver or connection) and gives one state:
 *   idle        nothing is expected (lesson not live, the server says the teacher's media
 *               is not in the relay, a camera switched off)
 *   waiting     expected, less than STALL_MS since it was expected or last flowed
 *   flowing     new video frames (or, when only sound is expected, new audio bytes) within
 *               the last FLOW_MS
 *   sound-only  video expected, none for STALL_MS, audio still arriving
 *   no-media    what is expected has not come for STALL_MS and no audio either
 * `stalled` (sound-only / no-media) stays true across a re-subscribe until media flows:
 * the page keeps saying so while it reconnects.
 *
 * Re-subscribing (`due()`): at STALL_MS without media on a connected connection; the
 * retry delay is capped low (retryDelay, RETRY_MAX_MS) so a returning teacher is seen
 * within the 5 s the issue asks even while the page cycles. When audio still flows
 * (sound-only) each re-subscribe cuts the sound for a moment, so those space out
 * (SOUND_ONLY_GAPS_MS): a teacher whose camera died keeps being heard. When the server
 * says the teacher's media is back (`media {publisher: true}`) the page calls expectFrom()
 * and, if no frame came within PUBLISHER_GRACE_MS, re-subscribes at once (`graceOver()`).
 *
 * onMediaHealth(cb) / reportMediaHealth(state): the page's state for plug-in modules
 * (onair.js: the on-air badge says "no picture" instead of a bare "on air").
 */
import { backoffDelay } from "./protocol.js";

/** No new frame for this long on a connected connection: say so and re-subscribe (ms). */
export const STALL_MS = 5000;
/** Frames within this long count as flowing (the counters are read once a second). */
export const FLOW_MS = 2500;
/** After the server says the teacher's media is back: frames within this long, or re-subscribe. */
export const PUBLISHER_GRACE_MS = 1000;
/** ... frames (or, when only sound is expected, audio bytes) that count as "it came back":
 * counted from the first reading after the message (a few frames still on their way when
 * the teacher's media went away do not count). */
export const GRACE_FRAMES = 8;
export const GRACE_AUDIO_BYTES = 1000;
/** The longest wait before a stalled page subscribes again (plus up to JITTER_MS). */
export const RETRY_MAX_MS = 2000;
/** Spread so that every classroom of a lesson does not re-subscribe in the same instant. */
export const JITTER_MS = 500;
/** Stall time before the 1st, 2nd, 3rd ... re-subscribe while the sound still flows. */
export const SOUND_ONLY_GAPS_MS = [STALL_MS, 15000, 30000, 60000];

/** @typedef {"idle" | "waiting" | "flowing" | "sound-only" | "no-media"} Health */
/**
 * What is expected now.
 * @typedef {object} Expect
 * @property {boolean} video a picture should arrive
 * @property {boolean} audio sound should arrive (alone it is what is expected when !video)
 * @property {boolean} connected the connection it should arrive on is connected
 */

export class MediaWatch {
  /** @param {string} label for the console */
  constructor(label) {
    this.label = label;
    /** @type {Health} */
    this.state = "idle";
    this.stalled = false;
    this.frames = 0; // this connection's counters at the last reading
    this.audio = 0;
    this.packets = 0;
    this.lastPacketAt = 0;
    this.lastFrameAt = 0;
    this.lastAudioAt = 0;
    this.since = 0; // when media was last expected from (clock start)
    this.stallStart = 0; // when the current stall began (first STALL_MS without media)
    this.resubscribes = 0; // re-subscribes of the current stall
    this.total = 0; // every re-subscribe this watch asked for (classroomStats)
    this.wasExpected = false;
    this.graceUntil = 0; // expectFrom(.., grace): re-subscribe at this time unless it came
    this.graceBase = -1; // frames (audio bytes) at the first reading after expectFrom
  }

  /** A new connection: its counters start at zero (the stall, if any, goes on). @param {number} now */
  newSession(now) {
    this.frames = 0;
    this.audio = 0;
    this.packets = 0;
    this.since = now;
    this.graceUntil = 0;
  }

  /**
   * Media is expected from `now` on (connected, the teacher's media back, back from the
   * audio tier, slot assigned): the STALL_MS clock starts again.
   * @param {number} now @param {number} [grace] re-subscribe if nothing came within this (ms)
   */
  expectFrom(now, grace) {
    this.since = now;
    this.graceUntil = grace ? now + grace : 0;
    this.graceBase = -1; // set by the next reading
  }

  /**
   * One reading of the counters (this connection's, never backwards).
   * @param {{frames: number, audio: number, packets?: number}} counts `packets`: video
   *   packets received (a diagnosis in the console: arriving but not decoded, or not arriving)
   * @param {Expect} expect
   * @param {number} now Date.now()
   * @returns {Health}
   */
  update(counts, expect, now) {
    const framesGrew = counts.frames > this.frames;
    const audioGrew = counts.audio > this.audio;
    if (framesGrew) {
      this.frames = counts.frames;
      this.lastFrameAt = now;
    }
    if (audioGrew) {
      this.audio = counts.audio;
      this.lastAudioAt = now;
    }
    if (this.graceUntil) {
      const progress = expect.video ? this.frames : this.audio;
      if (this.graceBase < 0) {
        this.graceBase = progress;
      } else if (progress - this.graceBase >= (expect.video ? GRACE_FRAMES : GRACE_AUDIO_BYTES)) {
        this.graceUntil = 0; // it came back on this connection: no forced re-subscribe
      }
    }
    if (counts.packets !== undefined && counts.packets > this.packets) {
      this.packets = counts.packets;
      this.lastPacketAt = now;
    }
    const expected = expect.video || expect.audio;
    if (expected && !this.wasExpected) {
      this.since = Math.max(this.since, now); // e.g. the lesson went live: the clock starts
    }
    this.wasExpected = expected;
    const audioFlows = now - this.lastAudioAt < FLOW_MS;
    const last = expect.video ? this.lastFrameAt : this.lastAudioAt;
    /** @type {Health} */
    let state;
    if (!expected) {
      state = "idle";
      this.stalled = false;
    } else if (now - last < FLOW_MS) {
      state = expect.connected ? "flowing" : "waiting";
      if (this.stalled && expect.connected) {
        console.info(this.label + ": media again " + (now - this.stallStart) + " ms after the stall");
        this.stalled = false;
        this.resubscribes = 0;
      }
    } else if (this.stalled || (expect.connected && now - Math.max(this.since, last) >= STALL_MS)) {
      state = expect.video && audioFlows ? "sound-only" : "no-media";
      if (!this.stalled) {
        this.stalled = true;
        this.stallStart = now;
        this.resubscribes = 0;
        const packets = counts.packets === undefined ? ""
          : now - this.lastPacketAt < FLOW_MS ? "; video packets arrive, none decoded"
            : "; no video packets";
        console.info(this.label + ": no media for " + STALL_MS + " ms (" + state + packets + ")");
      }
    } else {
      state = "waiting";
    }
    this.state = state;
    return state;
  }

  /**
   * Time to subscribe again: stalled on a connected connection for long enough (STALL_MS
   * on this connection; spaced out while the sound still flows), or the grace after the
   * teacher's media came back is over with nothing new decoded ("grace": subscribe again
   * at once, retryDelay(0) is not waited).
   * @param {Expect} expect @param {number} now
   * @returns {"stall" | "grace" | null}
   */
  due(expect, now) {
    if (!expect.connected || !(expect.video || expect.audio)) {
      return null;
    }
    if (this.graceUntil) {
      // "flowing" may still be the frames from before the teacher's media went away
      return now >= this.graceUntil && this.graceBase >= 0 ? "grace" : null;
    }
    if (!this.stalled || this.state === "flowing") {
      return null;
    }
    // on this connection: STALL_MS, or (the sound still flows) the next, longer gap
    const gaps = this.state === "sound-only" ? SOUND_ONLY_GAPS_MS : [STALL_MS];
    return now - this.since >= gaps[Math.min(this.resubscribes, gaps.length - 1)] ? "stall"
      : null;
  }

  /** The page re-subscribes now: count it. */
  resubscribed() {
    this.resubscribes += 1;
    this.total += 1;
    this.graceUntil = 0;
  }

  /**
   * A short, capped wait before the next subscribe of a stalled page (only the jitter after
   * the grace: the teacher's media is back, the 5 s count).
   * @param {number} attempt @param {"stall" | "grace"} [why]
   */
  retryDelay(attempt, why) {
    const jitter = Math.round(Math.random() * JITTER_MS);
    return why === "grace" ? jitter : Math.min(RETRY_MAX_MS, backoffDelay(attempt)) + jitter;
  }

  /** The connection was closed (a new one comes): what flowed is no longer flowing. */
  paused() {
    if (this.state === "flowing") {
      this.state = "waiting";
    }
  }

  /** Nothing is expected any more (lesson ended, page stopped). */
  reset() {
    this.state = "idle";
    this.stalled = false;
    this.lastFrameAt = 0;
    this.lastAudioAt = 0;
    this.resubscribes = 0;
    this.graceUntil = 0;
    this.wasExpected = false;
  }
}

/* ------------------------------------------------------------ the page's state, shared */

/** @type {Set<(state: Health) => void>} */
const watchers = new Set();
/** @type {Health} */
let pageHealth = "idle";

/**
 * Be told the page's media health (now, then on each change). Returns an unsubscribe.
 * @param {(state: Health) => void} cb
 */
export function onMediaHealth(cb) {
  watchers.add(cb);
  cb(pageHealth);
  return () => watchers.delete(cb);
}

/** The page says its media health (class.js). @param {Health} state */
export function reportMediaHealth(state) {
  if (state === pageHealth) {
    return;
  }
  pageHealth = state;
  watchers.forEach((cb) => {
    try {
      cb(state);
    } catch (e) {
      console.error(e);
    }
  });
}

/** The page's media health as last reported. @returns {Health} */
export function mediaHealth() {
  return pageHealth;
}
