// @ts-check
/* The classroom's camera and microphone to the teacher (class page, docs/two-way.md): a
 * second connection (purpose "uplink": echo cancellation, noise suppression, auto gain;
 * 640x360 sent as a 320x180 thumbnail at ~150 kbit/s, full size at ~300 kbit/s while on
 * stage), re-made by itself after a drop; the local teacher's mute-room / camera switches
 * (uplink-state to the server). A TV without a camera (or on plain http) still follows the
 * lesson: it only receives.
 */
import { cameraUnavailable, errorName, openCamera, stopTracks } from "./camera.js";
import { MediaLink, preferCodec } from "./peer.js";
import { rtpCounts } from "./stats.js";

/** @typedef {import("./protocol.js").Signal} Signal */
/** @typedef {import("./peer.js").OfferLedger} OfferLedger */
/**
 * What the uplink needs from its page.
 * @typedef {object} UplinkContext
 * @property {() => Signal | null} signal
 * @property {OfferLedger} ledger
 * @property {() => void} render
 * @property {() => boolean} allowed welcomed as a classroom, not stopped, lesson not ended
 * @property {() => boolean} finished the page stopped for good or the lesson ended
 * @property {() => boolean} onStage this classroom is on stage
 * @property {() => RTCIceServer[]} iceServers
 */

// uplink video: sent size, rate and frame rate off stage (thumbnail) and on stage
const UPLINK_THUMB = { maxBitrate: 150000, scaleResolutionDownBy: 2, maxFramerate: 15 };
const UPLINK_STAGE = { maxBitrate: 300000, scaleResolutionDownBy: 1, maxFramerate: 20 };
const UPLINK_CONSTRAINTS = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 20, max: 30 } }
};

// Refusals after which offering again cannot help in this session.
const UPLINK_FINAL = new Set([
  "bad_message", // an older server without the uplink purpose
  "forbidden",
  "too_many_tracks",
  "bad_sdp"
]);

export class Uplink {
  /** @param {UplinkContext} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    this.link = new MediaLink("classroom: uplink");
    this.connected = false;
    /** @type {string | null} an error code after which this session does not offer again */
    this.disabled = null;
    /** @type {RTCRtpSender | null} */
    this.videoSender = null;
    /** @type {RTCRtpSender | null} */
    this.audioSender = null;
    this.big = false; // the size last applied: full (on stage) or thumbnail
    /** @type {number | null} */
    this.shrinkTimer = null;
    this.framesEncoded = 0;
    /** @type {{stream: MediaStream | null, pending: boolean, error: string | null}} */
    this.camera = { stream: null, pending: false, error: null };
    this.local = { audio: true, video: true }; // the local teacher's mute-room / camera
  }

  /** A new session (welcome): offer again, even after a refusal of the last one. */
  reset() {
    this.disabled = null;
    this.link.attempt = 0;
  }

  /** Open the camera and microphone once; a TV without them still follows the lesson. */
  openCamera() {
    const cam = this.camera;
    if (cam.stream || cam.pending || !this.ctx.allowed()) {
      return;
    }
    const missing = cameraUnavailable();
    if (missing) {
      cam.error = missing; // still receives
      this.ctx.render();
      return;
    }
    cam.pending = true;
    const both = UPLINK_CONSTRAINTS;
    // no camera: the room is still heard; no microphone: still seen
    openCamera([both, { audio: both.audio }, { video: both.video }]).then(
      (stream) => {
        cam.pending = false;
        cam.error = null;
        if (this.ctx.finished()) {
          stopTracks(stream);
          this.ctx.render();
          return;
        }
        cam.stream = stream;
        this.applyLocalEnabled();
        this.start();
        this.ctx.render();
      },
      (err) => {
        cam.pending = false;
        cam.error = errorName(err);
        this.ctx.render();
      }
    );
  }

  /** The camera light goes off (lesson ended, page stopped). */
  closeCamera() {
    this.stop();
    stopTracks(this.camera.stream);
    this.camera.stream = null;
  }

  applyLocalEnabled() {
    const stream = this.camera.stream;
    if (!stream) {
      return;
    }
    stream.getAudioTracks().forEach((track) => {
      track.enabled = this.local.audio;
    });
    stream.getVideoTracks().forEach((track) => {
      track.enabled = this.local.video;
    });
  }

  /** The local teacher pressed mute-room ("audio") or camera ("video"). @param {"audio" | "video"} kind */
  toggle(kind) {
    this.local[kind] = !this.local[kind];
    this.applyLocalEnabled();
    this.sendState();
  }

  sendState() {
    const signal = this.ctx.signal();
    if (signal) {
      signal.send({ type: "uplink-state", audio: this.local.audio, video: this.local.video });
    }
  }

  /**
   * Full size on stage only. (Sending full size already while the hand is up did not make
   * the stage start sooner in the browser test: 0.3-1.4 s vs 0.2-0.75 s from the stage event
   * to the first decoded frame, on a loaded machine.)
   */
  wantBig() {
    return this.ctx.onStage();
  }

  encoding() {
    const e = this.wantBig() ? UPLINK_STAGE : UPLINK_THUMB;
    return {
      maxBitrate: e.maxBitrate,
      scaleResolutionDownBy: e.scaleResolutionDownBy,
      maxFramerate: e.maxFramerate
    };
  }

  /** Thumbnail size off stage, full size on stage (no renegotiation: setParameters). */
  applyEncoding() {
    const sender = this.videoSender;
    if (!sender || !sender.getParameters || !sender.setParameters || !this.link.media) {
      return;
    }
    this.big = this.wantBig();
    try {
      const params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) {
        return;
      }
      const want = this.encoding();
      const enc = params.encodings[0];
      enc.maxBitrate = want.maxBitrate;
      enc.scaleResolutionDownBy = want.scaleResolutionDownBy;
      enc.maxFramerate = want.maxFramerate;
      sender.setParameters(params).catch((err) => {
        console.info("classroom: uplink setParameters " + (err && err.name));
      });
    } catch (e) {
      /* an old browser: its default rate */
    }
  }

  /**
   * Stage changed: grow the uplink at once, shrink it only if it still should after 1.5 s
   * (a classroom called again right after leaving keeps its size).
   */
  resize() {
    if (!this.connected || this.big === this.wantBig()) {
      return;
    }
    if (this.wantBig()) {
      this.applyEncoding();
      return;
    }
    if (!this.shrinkTimer) {
      this.shrinkTimer = window.setTimeout(() => {
        this.shrinkTimer = null;
        if (this.connected && this.big && !this.wantBig()) {
          this.applyEncoding();
        }
      }, 1500);
    }
  }

  start() {
    const stream = this.camera.stream;
    const signal = this.ctx.signal();
    if (this.link.media || this.disabled || !stream || !signal || !this.ctx.allowed()) {
      return;
    }
    const session = this.link.open({
      purpose: "uplink",
      signal,
      iceServers: this.ctx.iceServers(),
      setup: (pc) => {
        const vtrack = stream.getVideoTracks()[0];
        const atrack = stream.getAudioTracks()[0];
        if (vtrack) {
          let vt;
          try {
            vt = pc.addTransceiver(vtrack, {
              direction: "sendonly",
              streams: [stream],
              sendEncodings: [this.encoding()]
            });
          } catch (e) {
            vt = pc.addTransceiver(vtrack, { direction: "sendonly", streams: [stream] });
          }
          preferCodec(vt, "video", "VP8");
          this.videoSender = vt.sender;
        }
        if (atrack) {
          const at = pc.addTransceiver(atrack, { direction: "sendonly", streams: [stream] });
          preferCodec(at, "audio", "opus");
          this.audioSender = at.sender;
        }
      },
      onOfferSent: () => this.ctx.ledger.sent("uplink"),
      onConnected: () => {
        this.connected = true;
        this.link.trouble = false;
        this.link.attempt = 0;
        this.applyEncoding();
        this.ctx.render();
      },
      onStateChange: () => this.ctx.render(),
      onFail: (reason) => this.failed(reason)
    });
    this.connected = false;
    session.start();
    this.ctx.render();
  }

  stop() {
    this.link.stop();
    this.connected = false;
    this.videoSender = null;
    this.audioSender = null;
  }

  /** @param {string} reason */
  failed(reason) {
    this.stop();
    if (!this.ctx.allowed() || this.disabled) {
      this.ctx.render();
      return;
    }
    this.link.retryLater(() => this.start(), reason);
    this.ctx.render();
  }

  /** The server refused the uplink offer with `code`. @param {string} code */
  refused(code) {
    if (code === "lesson_ended" || code === "lesson_not_live") {
      this.stop(); // the lesson message that (re)opens the lesson starts it again
      this.link.trouble = false;
      return;
    }
    if (UPLINK_FINAL.has(code)) {
      this.disabled = code;
      this.stop();
      console.info("classroom: uplink refused (" + code + "), not offered again");
      return;
    }
    this.failed(code);
  }

  /** @returns {Promise<void>} */
  poll() {
    if (!this.videoSender) {
      return Promise.resolve();
    }
    return rtpCounts(this.videoSender).then((c) => {
      this.framesEncoded = Math.max(this.framesEncoded, c.framesEncoded);
    });
  }

  /** For classroomStats().uplinkState: the connection's state or why there is none. */
  state() {
    const media = this.link.media;
    if (media && media.pc) {
      return media.pc.connectionState;
    }
    if (this.disabled) {
      return "refused";
    }
    if (this.camera.error && !this.camera.stream) {
      return "unavailable";
    }
    return this.link.trouble ? "retrying" : "new";
  }
}
