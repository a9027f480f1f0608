// @ts-check
/* The teacher's grid of classrooms (docs/two-way.md): a "grid" connection receives
 * GRID_SLOTS video slots and one audio line (the classroom on stage). The console shows the
 * classrooms a page at a time as tiles (name, uplink state, tier, hand, stage), tells the
 * server which classrooms are visible (grid-view) and puts each slot of the reply
 * (grid {slots}) on its tile. Per tile: call-on-stage / leave-stage / mute-classroom /
 * remove-classroom (data-action, data-peer-id).
 *
 * Honest tiles (watchdog.js, one MediaWatch per slot): a tile whose classroom the server
 * says sends (uplink `active`, camera on) but whose slot decoded nothing new for 5 s says
 * "no picture for 5 s" (`data-picture="no-media"`), never "connected" / "画面正常" over a
 * black tile; when every such tile is stalled the grid connection itself carries nothing
 * and is opened again (back-off 0.5 s doubling to 5 s while it stays so). One stalled tile
 * among flowing ones only says so: re-opening the grid would blank the others.
 */
import { $, el } from "./dom.js";
import { hasText, t } from "./i18n.js";
import { MediaLink, preferCodec } from "./peer.js";
import { backoffDelay } from "./protocol.js";
import { rtpCounts } from "./stats.js";
import { LIVE } from "./strings.js";
import { MediaWatch, STALL_MS } from "./watchdog.js";

/** @typedef {import("./protocol.js").Signal} Signal */
/** @typedef {import("./peer.js").OfferLedger} OfferLedger */
/** @typedef {{peer_id: string, role?: string, name?: string, school?: string, hand?: boolean, tier?: string, media_state?: string}} Peer */
/** @typedef {{peer_id: string, name?: string, school?: string}} StageInfo */
/** @typedef {{state?: string, audio?: boolean, video?: boolean, muted?: boolean}} UplinkInfo */
/** @typedef {{tier?: string, rtt_ms?: number, loss?: number}} LinkInfo */
/**
 * What the grid shows: the console's state (teach.js), read only here.
 * @typedef {object} ConsoleView
 * @property {Peer[]} peers the roster
 * @property {number} page the grid page shown (the grid clamps it)
 * @property {StageInfo | null} stage
 * @property {Record<string, UplinkInfo>} uplinks peer_id -> its uplink
 * @property {Record<string, LinkInfo>} links peer_id -> its link (tier events)
 * @property {Record<string, number>} confirmRemove peer_id -> first press of remove
 * @property {boolean} welcomed
 * @property {string | null} lessonState
 */
/**
 * @typedef {object} GridContext
 * @property {() => Signal | null} signal
 * @property {OfferLedger} ledger
 * @property {() => void} render
 * @property {() => boolean} allowed welcomed, not stopped, lesson not ended
 * @property {() => RTCIceServer[]} iceServers
 */

export const GRID_SLOTS = 9; // video slots of the grid connection = tiles per page
const GRID_FINAL = new Set(["bad_message", "forbidden", "bad_sdp"]);

/** The classrooms of a roster. @param {Peer[]} peers */
export function classrooms(peers) {
  return peers.filter((p) => p && p.role === "classroom");
}

/** A classroom's name from the roster (its id when unknown). @param {Peer[]} peers @param {string} peer */
export function roomName(peers, peer) {
  const p = peers.find((x) => x.peer_id === peer);
  return p ? p.name || peer : peer;
}

/**
 * Disable or enable a button so that it looks it and says it (aria-disabled too).
 * @param {HTMLButtonElement} b @param {boolean} off
 */
export function setDisabled(b, off) {
  b.disabled = off;
  b.setAttribute("aria-disabled", off ? "true" : "false");
}

/** A button acting on one classroom (a tile's, the hand queue's). @param {string} action @param {string} key @param {string} peer */
export function actionButton(action, key, peer) {
  return el("button", { type: "button", "data-action": action, "data-peer-id": peer }, t(key));
}

/** @param {string} cls @param {string} text */
function badge(cls, text) {
  return el("span", { className: "tile-badge " + cls }, text);
}

/** @param {number} n */
function pageCount(n) {
  return Math.max(1, Math.ceil(n / GRID_SLOTS));
}

export class Grid {
  /**
   * @param {ConsoleView} view
   * @param {GridContext} ctx
   * @param {{grid: HTMLElement, stageAudio: HTMLAudioElement}} els
   */
  constructor(view, ctx, els) {
    this.view = view;
    this.ctx = ctx;
    this.gridEl = els.grid;
    this.stageAudio = els.stageAudio;
    this.link = new MediaLink("teacher: grid");
    this.connected = false;
    this.answered = false;
    /** @type {string | null} a refusal after which this session offers no grid */
    this.disabled = null;
    /** @type {RTCRtpTransceiver[]} video transceivers, index = slot */
    this.slots = [];
    /** @type {RTCRtpTransceiver | null} the stage audio transceiver */
    this.audio = null;
    /** @type {MediaStream[]} slot -> MediaStream of that slot's track */
    this.streams = [];
    /** @type {Record<number, string>} slot -> peer_id (from the last grid reply) */
    this.assign = {};
    /** @type {Record<number, number | null>} slot -> framesDecoded when the peer got it (null: pending) */
    this.base = {};
    /** @type {Record<number, number>} slot -> last framesDecoded read */
    this.cur = {};
    /** @type {Record<string, number>} peer_id -> frames decoded in earlier slot assignments */
    this.frames = {};
    this.audioBytes = 0;
    this.lastView = "";
    /** @type {Record<string, HTMLElement>} peer_id -> tile element */
    this.tiles = {};
    /** @type {Record<number, MediaWatch>} slot -> its picture's watchdog (this connection) */
    this.watches = {};
    this.stallAttempt = 0; // grid re-opens for "nothing on any tile", reset when one flows
    this.resubscribes = 0;
  }

  /** A new session (welcome): offer again. */
  reset() {
    this.disabled = null;
    this.link.attempt = 0;
  }

  start() {
    const signal = this.ctx.signal();
    if (this.link.media || this.disabled || !signal || !this.ctx.allowed()) {
      return;
    }
    /** @type {RTCRtpTransceiver[]} */
    const slots = [];
    /** @type {RTCRtpTransceiver | null} */
    let audioTx = null;
    /** @type {MediaStream[]} */
    const streams = [];
    const session = this.link.open({
      purpose: "grid",
      signal,
      iceServers: this.ctx.iceServers(),
      setup: (pc) => {
        for (let i = 0; i < GRID_SLOTS; i++) {
          const tr = pc.addTransceiver("video", { direction: "recvonly" });
          preferCodec(tr, "video", "VP8", true); // the relay forwards VP8 only
          slots.push(tr);
        }
        audioTx = pc.addTransceiver("audio", { direction: "recvonly" });
        preferCodec(audioTx, "audio", "opus", true);
        this.audio = audioTx;
      },
      onOfferSent: () => this.ctx.ledger.sent("grid"),
      onTrack: (event) => {
        if (event.transceiver === audioTx || event.track.kind === "audio") {
          this.stageAudio.srcObject = new MediaStream([event.track]);
          this.stageAudio.play().catch(() => {});
          return;
        }
        const slot = slots.indexOf(event.transceiver);
        if (slot >= 0) {
          streams[slot] = new MediaStream([event.track]);
          this.render();
        }
      },
      onConnected: () => {
        this.connected = true;
        this.link.trouble = false;
        this.link.attempt = 0;
        this.ctx.render();
      },
      onStateChange: () => this.ctx.render(),
      onFail: (reason) => this.failed(reason)
    });
    this.slots = slots;
    this.streams = streams;
    this.connected = false;
    this.answered = false;
    this.assign = {};
    this.base = {};
    this.cur = {};
    this.lastView = "";
    this.audio = null;
    this.watches = {};
    session.start();
    this.ctx.render();
  }

  stop() {
    this.foldFrames();
    this.link.stop();
    this.connected = false;
    this.answered = false;
    this.slots = [];
    this.streams = [];
    this.assign = {};
    this.audio = null;
    this.stageAudio.srcObject = null;
  }

  /** @param {string} reason @param {number} [delay] a fixed delay */
  failed(reason, delay) {
    this.stop();
    if (!this.ctx.allowed() || this.disabled) {
      this.ctx.render();
      return;
    }
    this.link.retryLater(() => this.start(), reason, delay);
    this.ctx.render();
  }

  /** The server refused the grid offer. @param {string} code */
  refused(code) {
    if (GRID_FINAL.has(code)) {
      this.disabled = code; // an older server: no grid in this session
      this.stop();
      console.info("teacher: grid refused (" + code + "), not offered again");
      return;
    }
    if (code === "lesson_ended") {
      this.stop();
      return;
    }
    this.failed(code);
  }

  /** @param {string} sdp */
  answer(sdp) {
    if (this.link.media) {
      this.link.media.handleAnswer(sdp);
      this.answered = true;
      this.lastView = "";
    }
  }

  /** For classroomStats().gridState. */
  state() {
    const media = this.link.media;
    return media && media.pc ? media.pc.connectionState : this.disabled ? "refused" : "new";
  }

  /** Frames of each slot's current peer go to that peer's total when the slot changes. */
  foldFrames() {
    for (const peer of Object.values(this.assign)) {
      this.frames[peer] = this.tileFrames(peer);
    }
  }

  /** Frames decoded on `peer`'s tile over every slot it had. @param {string} peer */
  tileFrames(peer) {
    let total = this.frames[peer] || 0;
    for (const key of Object.keys(this.assign)) {
      const slot = Number(key);
      const base = this.base[slot];
      if (this.assign[slot] === peer && base !== null && base !== undefined &&
          this.cur[slot] !== undefined) {
        total = (this.frames[peer] || 0) + Math.max(0, this.cur[slot] - base);
      }
    }
    return total;
  }

  /** grid {slots}: which classroom each slot carries now. @param {unknown} slots */
  applySlots(slots) {
    if (!Array.isArray(slots)) {
      return;
    }
    /** @type {Record<number, string>} */
    const next = {};
    slots.forEach((s) => {
      if (s && typeof s.slot === "number" && typeof s.peer_id === "string" &&
          s.slot >= 0 && s.slot < GRID_SLOTS) {
        next[s.slot] = s.peer_id;
      }
    });
    for (let slot = 0; slot < GRID_SLOTS; slot++) {
      if (this.assign[slot] !== next[slot]) {
        const old = this.assign[slot];
        if (old) {
          this.frames[old] = this.tileFrames(old);
        }
        this.base[slot] = null; // read at the next poll: frames before that are not counted
        delete this.watches[slot]; // another classroom: its own 5 s
      }
    }
    this.assign = next;
    this.poll();
  }

  /** @returns {Promise<void>} */
  poll() {
    const slots = this.slots;
    const reads = slots.map((tr) => rtpCounts(tr.receiver));
    reads.push(rtpCounts(this.audio && this.audio.receiver));
    return Promise.all(reads).then((r) => {
      if (slots !== this.slots) {
        return;
      }
      for (let i = 0; i < slots.length; i++) {
        this.cur[i] = r[i].framesDecoded;
        if (this.base[i] === null) {
          this.base[i] = r[i].framesDecoded;
        }
      }
      this.audioBytes = Math.max(this.audioBytes, r[slots.length].bytesReceived);
      this.watchTiles(r.map((c) => c.framesDecoded));
    });
  }

  /** Whether `peer`'s tile should show a picture: the server says its uplink sends video. @param {string} peer */
  expectsPicture(peer) {
    const up = this.view.uplinks[peer] || {};
    return this.view.welcomed && this.view.lessonState !== "ended" && up.state === "active" &&
      up.video !== false && this.slotOf(peer) >= 0;
  }

  /**
   * The slots' frame counters of this connection (one reading): each assigned slot's
   * watchdog; the grid is opened again when every tile that should move is stalled.
   * @param {number[]} frames
   */
  watchTiles(frames) {
    const now = Date.now();
    const connected = this.connected && this.link.state() === "connected";
    let expected = 0;
    let stalled = 0;
    let flowing = 0;
    let due = false;
    for (const key of Object.keys(this.assign)) {
      const slot = Number(key);
      const peer = this.assign[slot];
      let watch = this.watches[slot];
      if (!watch) {
        watch = this.watches[slot] = new MediaWatch("teacher: grid slot " + slot);
        watch.newSession(now);
      }
      const expect = { video: this.expectsPicture(peer), audio: false, connected };
      const before = watch.state;
      const state = watch.update({ frames: frames[slot] || 0, audio: 0 }, expect, now);
      if (expect.video) {
        expected += 1;
        stalled += watch.stalled ? 1 : 0;
        flowing += state === "flowing" ? 1 : 0;
        due = due || !!watch.due(expect, now);
      }
      if (before !== state) {
        this.ctx.render();
      }
    }
    if (flowing) {
      this.stallAttempt = 0;
    }
    if (connected && expected && stalled === expected && due) {
      this.resubscribes += 1;
      const delay = backoffDelay(this.stallAttempt);
      this.stallAttempt += 1;
      this.failed("no frames on any tile for " + STALL_MS + " ms", delay);
    }
  }

  /** The picture state of `peer`'s tile (watchdog.js Health). @param {string} peer */
  pictureOf(peer) {
    const slot = this.slotOf(peer);
    const watch = slot >= 0 ? this.watches[slot] : null;
    return watch && this.expectsPicture(peer) ? watch.state : "idle";
  }

  /** The slot carrying `peer`, -1 when none. @param {string} peer */
  slotOf(peer) {
    for (const key of Object.keys(this.assign)) {
      if (this.assign[Number(key)] === peer) {
        return Number(key);
      }
    }
    return -1;
  }

  /** For classroomStats().tiles. */
  tileStats() {
    /** @type {Record<string, {framesDecoded: number, slot: number}>} */
    const out = {};
    for (const peer of Object.keys(this.tiles)) {
      out[peer] = { framesDecoded: this.tileFrames(peer), slot: this.slotOf(peer) };
    }
    return out;
  }

  visibleRooms() {
    const view = this.view;
    const rooms = classrooms(view.peers);
    view.page = Math.min(view.page, pageCount(rooms.length) - 1);
    return rooms.slice(view.page * GRID_SLOTS, (view.page + 1) * GRID_SLOTS);
  }

  /** grid-prev / grid-next. @param {number} step */
  turnPage(step) {
    this.view.page = Math.max(0, this.view.page + step);
  }

  /** Tell the server which classrooms are visible (once the grid connection is answered). */
  sendView() {
    const signal = this.ctx.signal();
    if (!this.answered || !signal) {
      return;
    }
    const ids = this.visibleRooms().map((p) => p.peer_id);
    const key = JSON.stringify(ids);
    if (key === this.lastView) {
      return;
    }
    if (signal.send({ type: "grid-view", peers: ids })) {
      this.lastView = key;
    }
  }

  /** @param {string} peer */
  makeTile(peer) {
    const tile = el("div", { className: "tile", "data-tile": peer });
    const v = el("video");
    v.muted = true; // a tile never plays sound: the stage's sound comes on the grid audio
    v.autoplay = true;
    v.playsInline = true;
    v.setAttribute("playsinline", "");
    const top = el("div", { className: "tile-top" });
    top.appendChild(el("span", { className: "tile-name" }));
    top.appendChild(el("span", { className: "tile-hand" }, t("hand_mark")));
    top.appendChild(el("span", { className: "tile-badges" }));
    const actions = el("div", { className: "tile-actions" });
    actions.appendChild(actionButton("call-on-stage", "call_on_stage", peer));
    actions.appendChild(actionButton("leave-stage", "leave_stage", peer));
    actions.appendChild(actionButton("mute-classroom", "mute_classroom", peer));
    actions.appendChild(actionButton("remove-classroom", "remove_classroom", peer));
    tile.appendChild(v);
    tile.appendChild(el("div", { className: "tile-empty" }));
    tile.appendChild(top);
    tile.appendChild(el("div", { className: "tile-info" }));
    tile.appendChild(actions);
    return tile;
  }

  render() {
    const view = this.view;
    const rooms = classrooms(view.peers);
    const visible = this.visibleRooms();
    const pages = pageCount(rooms.length);
    $("#grid-page").textContent = t("grid_page", { page: view.page + 1, pages });
    setDisabled($('[data-action="grid-prev"]', HTMLButtonElement), view.page <= 0);
    setDisabled($('[data-action="grid-next"]', HTMLButtonElement), view.page >= pages - 1);
    const stageEl = $("#stage-now");
    stageEl.textContent = view.stage
      ? t("stage_now", { name: view.stage.name || roomName(view.peers, view.stage.peer_id) })
      : t("stage_none");
    stageEl.setAttribute("data-stage", view.stage ? "on" : "none");
    $("#grid-status").textContent = this.link.media && !this.connected ? t("grid_connecting") : "";

    /** @type {Set<string>} */
    const keep = new Set();
    visible.forEach((p, index) => {
      const peer = p.peer_id;
      keep.add(peer);
      let tile = this.tiles[peer];
      if (!tile) {
        tile = this.tiles[peer] = this.makeTile(peer);
      }
      if (this.gridEl.children[index] !== tile) {
        this.gridEl.insertBefore(tile, this.gridEl.children[index] || null);
      }
      this.updateTile(tile, p);
    });
    for (const peer of Object.keys(this.tiles)) {
      if (!keep.has(peer)) {
        const tile = this.tiles[peer];
        $("video", HTMLVideoElement, tile).srcObject = null;
        tile.remove();
        delete this.tiles[peer];
      }
    }
    this.sendView();
  }

  /** @param {HTMLElement} tile @param {Peer} p */
  updateTile(tile, p) {
    const view = this.view;
    const peer = p.peer_id;
    const up = view.uplinks[peer] || {};
    const onStage = !!(view.stage && view.stage.peer_id === peer);
    const muted = !!up.muted;
    const state = up.state || "none";
    const link = view.links[peer] || {};
    const tier = link.tier || p.tier || "";
    tile.setAttribute("data-hand", p.hand ? "true" : "false");
    tile.setAttribute("data-state", state);
    tile.setAttribute("data-tier", tier);
    tile.setAttribute("data-stage", onStage ? "true" : "false");
    tile.setAttribute("data-muted", muted ? "true" : "false");
    $(".tile-name", HTMLElement, tile).textContent = [p.name || peer, p.school].filter(Boolean).join(" · ");
    $(".tile-hand", HTMLElement, tile).hidden = !p.hand;
    const badges = $(".tile-badges", HTMLElement, tile);
    badges.textContent = "";
    if (onStage) {
      badges.appendChild(badge("stage", t("on_stage_badge")));
    }
    if (muted) {
      badges.appendChild(badge("muted", t("muted_badge")));
    }
    if (up.audio === false) {
      badges.appendChild(badge("", t("mic_off_badge")));
    }
    if (up.video === false) {
      badges.appendChild(badge("", t("cam_off_badge")));
    }
    const picture = this.pictureOf(peer);
    tile.setAttribute("data-picture", picture);
    let stateKey = state === "connecting" ? "media_connecting_state" : "media_" + state;
    if (picture === "sound-only" || picture === "no-media") {
      stateKey = "tile_no_picture"; // the server says it sends; nothing came for 5 s
    } else if ((state === "active" || state === "connected") && picture !== "flowing") {
      // never "connected" / "画面正常" over a tile that shows nothing
      stateKey = picture === "waiting" ? "media_connecting_state" : "media_inactive";
    }
    const info = [t(hasText(LIVE, stateKey) ? stateKey : "media_none")];
    if (tier) {
      info.push(t("tier_" + tier));
    }
    $(".tile-info", HTMLElement, tile).textContent = info.join(" · ");

    const slot = this.slotOf(peer);
    const v = $("video", HTMLVideoElement, tile);
    const stream = slot >= 0 ? this.streams[slot] || null : null;
    if (v.srcObject !== stream) {
      v.srcObject = stream;
    }
    if (stream && v.paused) {
      v.play().catch(() => {});
    }
    const empty = $(".tile-empty", HTMLElement, tile);
    empty.hidden = !!stream;
    empty.textContent = t("uplink_state_none");

    const canAct = view.welcomed && view.lessonState !== "ended";
    const call = $('[data-action="call-on-stage"]', HTMLButtonElement, tile);
    const leave = $('[data-action="leave-stage"]', HTMLButtonElement, tile);
    const mute = $('[data-action="mute-classroom"]', HTMLButtonElement, tile);
    const remove = $('[data-action="remove-classroom"]', HTMLButtonElement, tile);
    call.hidden = onStage;
    leave.hidden = !onStage;
    [call, leave, mute, remove].forEach((b) => setDisabled(b, !canAct));
    mute.setAttribute("aria-pressed", muted ? "true" : "false");
    mute.textContent = t(muted ? "unmute_classroom" : "mute_classroom");
    const confirming = !!view.confirmRemove[peer] && Date.now() - view.confirmRemove[peer] < 5000;
    remove.setAttribute("data-confirm", confirming ? "true" : "false");
    remove.textContent = t(confirming ? "confirm_remove" : "remove_classroom");
  }
}
