// @ts-check
/* Glass-to-glass latency (docs/latency.md): this page's clock and, on a classroom, what it
 * plays, sent as `glass` on the socket every few seconds.
 *
 * Loaded as a module by the teacher console and the classroom view. It
 * - measures the page's clock against the server's with the socket's own ping/pong
 *   (ping {ts: "glass:<t0>"}, pong {ts, server_time}): offset = (t0 + t2) / 2 - server_time,
 *   from the sample with the smallest round trip among the last few (its error is at most
 *   half that round trip). The page clock is performance.timeOrigin + performance.now(),
 *   the clock of RTCRtpSynchronizationSource.timestamp (and of the teacher's capture
 *   times in its RTCP sender reports, which Chromium derives from the same monotonic clock);
 * - on a classroom, reads getSynchronizationSources() of the camera's video and audio
 *   receivers of its `subscribe` connection (the first video and the first audio
 *   transceiver): ssrc, rtpTimestamp and timestamp of the newest frame delivered to the
 *   track (decoded, before the screen or the speaker);
 * - sends glass {offset_ms, rtt_ms, samples: [{kind, ssrc, rtp, at_ms}]} (the teacher:
 *   no samples; the server needs its offset for the capture times).
 *
 * ?glass_ms=N sets the report interval (default 3000, at least 1000: the server takes one
 * a second). window.classroomGlass() returns {sent, refused, offset_ms, rtt_ms, last,
 * peer_id} (the peer id of the page's welcome: its row in GET /api/lessons/{lesson}/glass).
 */

import { onServerMessage, pageIdentity, pageRole, peerConnections, sendMessage }
  from "./protocol.js";

const PREFIX = "glass:";
const KEEP_CLOCK_SAMPLES = 8;
const FAST_PINGS = 5;
const FAST_PING_MS = 500;
const PING_MS = 5000;

/** @typedef {{offset: number, rtt: number}} ClockSample */
/** @typedef {{kind: string, ssrc: number, rtp: number, at_ms: number}} PlayoutSample */

const params = new URLSearchParams(window.location.search);
const interval = Math.max(1000, Number(params.get("glass_ms")) || 3000);

/** @type {ClockSample[]} */
let clockSamples = [];
let pings = 0;
let sent = 0;
let refused = 0;
/** @type {Record<string, any> | null} */
let last = null;

/** The page clock (ms): the clock of getSynchronizationSources().timestamp. */
function pageNow() {
  return performance.timeOrigin + performance.now();
}

/** The sample with the smallest round trip among the recent ones, or null. */
function bestClock() {
  let best = null;
  for (const sample of clockSamples) {
    if (!best || sample.rtt < best.rtt) {
      best = sample;
    }
  }
  return best;
}

function ping() {
  if (pageRole()) {
    sendMessage({ type: "ping", ts: PREFIX + pageNow().toFixed(3) });
  }
  pings += 1;
  setTimeout(ping, pings < FAST_PINGS ? FAST_PING_MS : PING_MS);
}

/** @param {Record<string, any>} msg */
function onPong(msg) {
  const t2 = pageNow();
  const t0 = Number(String(msg.ts).slice(PREFIX.length));
  if (!Number.isFinite(t0) || typeof msg.server_time !== "number" || t2 < t0) {
    return;
  }
  clockSamples.push({ offset: (t0 + t2) / 2 - msg.server_time * 1000, rtt: t2 - t0 });
  if (clockSamples.length > KEEP_CLOCK_SAMPLES) {
    clockSamples = clockSamples.slice(-KEEP_CLOCK_SAMPLES);
  }
}

/**
 * The newest synchronization source of a receiver as a sample, or null.
 * @param {RTCRtpReceiver} receiver @param {string} kind
 * @returns {PlayoutSample | null}
 */
function sampleOf(receiver, kind) {
  if (typeof receiver.getSynchronizationSources !== "function") {
    return null;
  }
  let newest = null;
  for (const source of receiver.getSynchronizationSources()) {
    if (!newest || source.timestamp > newest.timestamp) {
      newest = source;
    }
  }
  if (!newest || typeof newest.rtpTimestamp !== "number") {
    return null;
  }
  return { kind, ssrc: newest.source, rtp: newest.rtpTimestamp, at_ms: newest.timestamp };
}

/** The camera's video and audio samples of the subscribe connection. */
function playoutSamples() {
  /** @type {PlayoutSample[]} */
  const samples = [];
  const entry = peerConnections().find((e) => e.purpose === "subscribe"
    && e.pc.connectionState === "connected");
  if (!entry) {
    return samples;
  }
  for (const kind of ["video", "audio"]) {
    const transceiver = entry.pc.getTransceivers().find(
      (t) => t.receiver.track && t.receiver.track.kind === kind);
    const sample = transceiver ? sampleOf(transceiver.receiver, kind) : null;
    if (sample) {
      samples.push(sample);
    }
  }
  return samples;
}

function report() {
  setTimeout(report, interval);
  const role = pageRole();
  const clock = bestClock();
  if (!clock || (role !== "teacher" && role !== "classroom")) {
    return;
  }
  /** @type {Record<string, any>} */
  const msg = { type: "glass", offset_ms: clock.offset, rtt_ms: clock.rtt };
  if (role === "classroom") {
    const samples = playoutSamples();
    if (!samples.length) {
      return;
    }
    msg.samples = samples;
  }
  if (sendMessage(msg)) {
    sent += 1;
    last = msg;
  }
}

onServerMessage((msg) => {
  if (msg.type === "pong" && typeof msg.ts === "string" && msg.ts.startsWith(PREFIX)) {
    onPong(msg);
    return true;
  }
  if (msg.type === "welcome") {
    clockSamples = []; // a new socket: maybe another server node, measure again
    pings = 0;
  }
  if (msg.type === "error" && msg.ref === "glass") {
    refused += 1;
    return true;
  }
  return false;
});

/** For automated browsers: what this module measured and sent. */
Object.assign(window, {
  classroomGlass: () => {
    const clock = bestClock();
    return { sent, refused, offset_ms: clock ? clock.offset : null,
      rtt_ms: clock ? clock.rtt : null, last, peer_id: pageIdentity().peer_id };
  }
});

setTimeout(ping, 200);
setTimeout(report, interval);
