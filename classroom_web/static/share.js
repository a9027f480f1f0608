// @ts-check
/* The teacher's screen share (docs/two-way.md): the publish always carries a second video
 * m-line for it; share-screen puts the screen on it in place (replaceTrack, contentHint
 * "detail") and says share {on}, so the camera is never re-published (no blink).
 */
import { errorName, stopTracks } from "./camera.js";
import { t } from "./i18n.js";

/** @typedef {import("./protocol.js").Signal} Signal */
/**
 * @typedef {object} ShareContext
 * @property {() => Signal | null} signal
 * @property {() => boolean} publishing the publish connection is connected
 * @property {() => void} republish publish again (that publish carries the screen)
 * @property {() => void} render
 * @property {(text: string) => void} notice
 */

const SHARE_ENCODING = { maxBitrate: 1200000, maxFramerate: 15 };

export class Share {
  /** @param {ShareContext} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    /** @type {MediaStream | null} */
    this.stream = null;
    this.pending = false;
    /** @type {RTCRtpSender | null} the publish's share m-line */
    this.sender = null;
    this.unsupported = false; // the server refused the share's m-line: camera alone
  }

  /** The share's video track now (null when not sharing). */
  track() {
    return this.stream ? this.stream.getVideoTracks()[0] || null : null;
  }

  /** Slides stay sharp: a frame rate and bit rate cap, resolution kept. */
  tuneSender() {
    const sender = this.sender;
    if (!sender || !sender.getParameters || !sender.setParameters) {
      return;
    }
    try {
      const params = sender.getParameters();
      if (params.encodings && params.encodings.length) {
        params.encodings[0].maxBitrate = SHARE_ENCODING.maxBitrate;
        params.encodings[0].maxFramerate = SHARE_ENCODING.maxFramerate;
      }
      params.degradationPreference = "maintain-resolution";
      sender.setParameters(params).catch(() => {});
    } catch (e) {
      /* the browser's defaults */
    }
  }

  toggle() {
    if (this.stream) {
      this.stop();
    } else {
      this.start();
    }
  }

  start() {
    if (this.stream || this.pending) {
      return;
    }
    const md = navigator.mediaDevices;
    if (!md || !md.getDisplayMedia) {
      this.ctx.notice(t("share_failed", { reason: "getDisplayMedia" }));
      return;
    }
    this.pending = true;
    this.ctx.render();
    md.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 15 } }, audio: false }).then(
      (stream) => {
        this.pending = false;
        const track = stream.getVideoTracks()[0];
        if (!track) {
          this.ctx.notice(t("share_failed", { reason: "no video" }));
          return;
        }
        if ("contentHint" in track) {
          track.contentHint = "detail";
        }
        track.addEventListener("ended", () => {
          if (this.stream === stream) {
            this.stop(); // the browser's own "stop sharing" bar
          }
        });
        this.stream = stream;
        this.swapTrack(track, () => {
          if (this.stream === stream) {
            this.tuneSender();
            this.ctx.render();
          }
        });
      },
      (err) => {
        this.pending = false;
        this.ctx.notice(t("share_failed", { reason: errorName(err) }));
      }
    );
  }

  stop() {
    const stream = this.stream;
    if (!stream) {
      return;
    }
    this.stream = null;
    stopTracks(stream);
    this.swapTrack(null);
  }

  /**
   * The server refused the share's m-line (bad_sdp): publish the camera alone from now on.
   * Returns true when a share was running (and is now stopped).
   */
  refused() {
    this.unsupported = true;
    const stream = this.stream;
    this.stream = null;
    stopTracks(stream);
    return !!stream;
  }

  /**
   * Put `track` (null: none) on the publish's share m-line in place, saying share {on}
   * first (the relay then decodes the share from its very first keyframe). Not connected
   * yet, or the browser would not swap: publish again (that publish carries the screen).
   * @param {MediaStreamTrack | null} track @param {() => void} [done]
   */
  swapTrack(track, done) {
    const sender = this.sender;
    const signal = this.ctx.signal();
    if (!sender || !sender.replaceTrack || !this.ctx.publishing()) {
      if (!track && signal) {
        signal.send({ type: "share", on: false });
      }
      this.ctx.republish();
      return;
    }
    if (signal) {
      signal.send({ type: "share", on: !!track });
    }
    sender.replaceTrack(track).then(done || (() => {}), () => this.ctx.republish());
    this.ctx.render();
  }
}
