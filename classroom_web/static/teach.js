// @ts-check
/* Teacher console: /teach/{lesson}#token=...
 *
 * Camera and microphone preview, publishing to the relay over WebRTC (offer with purpose
 * "publish"), start / end the lesson, and the roster of remote classrooms with their media
 * connection state and raised hands. Reconnects the socket and the publish connection by
 * itself like the classroom view does.
 *
 * Two-way lesson (docs/two-way.md): the grid of classrooms (grid.js), the hand queue
 * (raised hands oldest first, call-on-stage from it) and the screen share (share.js). The
 * publish always carries a second video m-line for the share.
 *
 * Honest states (watchdog.js STALL_MS): a publish connection that is connected while the
 * server says none of the teacher's media reaches it (`media {publisher: false}`) for 5 s
 * says so ("正在上课，但服务器没有收到您的画面和声音…", never "the classrooms see and hear
 * you") and publishes again; the grid's tiles say "no picture for 5 s" (grid.js).
 *
 * Modules: protocol.js (socket), peer.js (connections), stats.js (classroomStats totals),
 * grid.js, share.js, camera.js, quiz-teacher.js, watchdog.js.
 */
import { cameraUnavailable, errorName, openCamera } from "./camera.js";
import { $, el } from "./dom.js";
import { Grid, actionButton, classrooms, roomName, setDisabled } from "./grid.js";
import { applyI18n, lang, params, t } from "./i18n.js";
import { Notice, errorText, startProblem } from "./notices.js";
import { MediaLink, OfferLedger, errorTarget, preferCodec } from "./peer.js";
import { Signal, apiJson, lessonFromPath, lessonOf, readToken } from "./protocol.js";
import { attachTeacherQuiz, reportUrl } from "./quiz-teacher.js";
import { Share } from "./share.js";
import { StatsTotals } from "./stats.js";
import { STALL_MS } from "./watchdog.js";

/** @typedef {import("./protocol.js").Message} Message */
/** @typedef {import("./notices.js").Fatal} Fatal */
/** @typedef {import("./grid.js").Peer} Peer */
/** @typedef {import("./grid.js").StageInfo} StageInfo */
/** @typedef {import("./grid.js").UplinkInfo} UplinkInfo */
/** @typedef {import("./grid.js").LinkInfo} LinkInfo */

applyI18n();

const preview = $("#preview", HTMLVideoElement);
const statusEl = $("#status");
const mediaStatusEl = $("#media-status");
const startButton = $('[data-action="start-lesson"]', HTMLButtonElement);
const endButton = $('[data-action="end-lesson"]', HTMLButtonElement);
const rosterBody = $("#roster-body");
const shareButton = $('[data-action="share-screen"]', HTMLButtonElement);
const handQueueEl = $("[data-hand-queue]");
const connLostEl = $("#conn-lost");
const endingEl = $("#lesson-ending");
/** When the server ends this timetable lesson by itself (lesson-ending), ms; 0: not said. */
let endsAt = 0;
const lessonEndEl = $("#lesson-end");
const endReplay = $("#end-replay", HTMLAnchorElement);

/** @type {Record<string, {width: number, height: number}>} */
const RESOLUTIONS = {
  "360": { width: 640, height: 360 },
  "540": { width: 960, height: 540 },
  "720": { width: 1280, height: 720 }
};

const st = {
  /** @type {Record<string, LinkInfo>} peer_id -> {tier, rtt_ms, loss} from tier events */
  links: {},
  token: readToken(),
  lesson: lessonFromPath(),
  /** @type {Fatal | null} */
  fatal: null,
  welcomed: false,
  lost: false,
  /** @type {string | null} */
  peerId: null,
  /** @type {string | null} */
  lessonState: null,
  lessonTitle: "",
  /** @type {RTCIceServer[]} */
  iceServers: [],
  /** @type {MediaStream | null} */
  stream: null,
  /** @type {string | null} */
  cameraError: null,
  cameraPending: true,
  mediaConnected: false,
  /** @type {boolean | null} */
  publisher: null,
  noMediaSince: 0, // Date.now() since the publish is connected and the server has no media
  publishStalled: false, // ... for STALL_MS: said, and published again
  /** @type {Peer[]} */
  peers: [],
  // two-way lesson
  page: 0,
  /** @type {string[]} classroom peer ids with a raised hand, oldest first */
  hands: [],
  /** @type {Record<string, number>} peer_id -> server time of its raise, when known */
  handAt: {},
  /** @type {StageInfo | null} */
  stage: null,
  /** @type {Record<string, UplinkInfo>} */
  uplinks: {},
  /** @type {Record<string, number>} peer_id -> time of the first press of remove-classroom */
  confirmRemove: {},
  publishes: 0,
  startWarning: false, // start pressed with no camera: the notice and start-anyway are shown
  /** @type {string | null} the lesson's last recording (announced by `recording` messages) */
  recordingId: null,
  /** @type {string | null} its signed replay link, once it is packaged */
  replayUrl: null
};
const publish = new MediaLink("teacher: publish");
const stats = new StatsTotals();
const ledger = new OfferLedger();
const notice = new Notice(render);
/** @type {Signal | null} */
let signal = null;
const allowed = () => !st.fatal && st.welcomed && st.lessonState !== "ended";
const grid = new Grid(st, {
  signal: () => signal,
  ledger,
  render,
  allowed,
  iceServers: () => st.iceServers
}, { grid: $("#grid"), stageAudio: $("#stage-audio", HTMLAudioElement) });
const share = new Share({
  signal: () => signal,
  publishing: () => st.mediaConnected,
  republish,
  render,
  notice: (text) => notice.show(text)
});

// The notice shown when start is pressed with no camera (and its start-anyway button).
const startWarningText = el("p");
const startAnyway = el("button", { type: "button", "data-action": "start-anyway" }, t("start_anyway"));
const startWarningEl = el("div", { className: "status start-warning", role: "alert",
  "data-start-warning": "" });
startWarningEl.hidden = true;
startWarningEl.appendChild(startWarningText);
startWarningEl.appendChild(startAnyway);

/* ------------------------------------------------------------ rendering */

function statusText() {
  if (st.fatal) {
    return t(st.fatal.title) + (lang === "en" ? ". " : "。") + t(st.fatal.detail);
  }
  if (!st.welcomed) {
    return t(st.lost ? "reconnecting" : "connecting");
  }
  if (st.cameraError === "insecure") {
    return t("insecure_page", { origin: window.location.origin });
  }
  if (st.cameraError) {
    return t("camera_failed", { reason: st.cameraError });
  }
  if (st.lessonState === "ended") {
    return t("lesson_ended_teacher");
  }
  if (publish.trouble) {
    return t("publish_retry");
  }
  if (st.lessonState === "live") {
    return t(st.publishStalled ? "lesson_live_no_media" : "lesson_live_teacher");
  }
  if (st.cameraPending) {
    return t("camera_opening");
  }
  return st.mediaConnected ? t("ready_to_start") : t("publish_connecting");
}

function render() {
  let text = statusText();
  if (notice.text) {
    text = notice.text + " — " + text;
  }
  statusEl.textContent = text;
  statusEl.setAttribute("data-fatal", st.fatal ? "true" : "false");

  const state = st.lessonState || "waiting";
  const badge = $("#lesson-state");
  badge.textContent = t("state_" + state);
  badge.setAttribute("data-state", state);
  $("#lesson-name").textContent = st.lessonTitle || st.lesson;

  setDisabled(startButton, !st.welcomed || state === "live");
  renderStartWarning(state);
  setDisabled(endButton, !st.welcomed || state !== "live");
  // the socket is down (not a fatal stop): a banner that stays until it is back
  connLostEl.hidden = !(st.lost && !st.welcomed && !st.fatal);
  endingEl.hidden = !(endsAt && state === "live");
  if (!endingEl.hidden) {
    const at = new Date(endsAt);
    const hhmm = String(at.getHours()).padStart(2, "0") + ":" +
      String(at.getMinutes()).padStart(2, "0");
    endingEl.textContent = t("lesson_ending", { time: hhmm });
  }
  renderLessonEnd(state);

  const media = [];
  if (publish.media && publish.media.pc) {
    media.push(t(st.publishStalled ? "publish_no_media"
      : st.mediaConnected ? "publish_ok" : "publish_connecting"));
  }
  if (st.publisher) {
    media.push(t("publisher_on"));
  }
  if (share.stream) {
    media.push(t("sharing"));
  }
  mediaStatusEl.textContent = media.join(" · ");
  setDisabled(shareButton, !st.welcomed || !st.stream || share.pending ||
    share.unsupported || state === "ended");
  shareButton.setAttribute("aria-pressed", share.stream ? "true" : "false");
  $("#share-text").textContent = t(share.stream ? "stop_share" : "share_screen");
  renderRoster();
  renderHands();
  grid.render();
}

/** After the end: the learning report, the library and, once packaged, the replay. @param {string} state */
function renderLessonEnd(state) {
  const ended = state === "ended";
  lessonEndEl.hidden = !ended;
  if (!ended) {
    return;
  }
  $("#end-report", HTMLAnchorElement).href = reportUrl();
  $("#end-library", HTMLAnchorElement).href = "/library" + (lang === "en" ? "?lang=en" : "") +
    "#token=" + encodeURIComponent(st.token);
  endReplay.hidden = !st.replayUrl;
  if (st.replayUrl) {
    endReplay.href = st.replayUrl + (lang === "en" ? "&lang=en" : "");
  }
  $("#end-recording").textContent = !st.recordingId ? t("recording_none")
    : st.replayUrl ? "" : t("recording_packaging");
}

/**
 * Ask the library for the lesson's recording (the one announced while live, else its
 * newest) until it is packaged, about half a minute after the end, and show its replay
 * link; stops when the lesson is live again. Also finds it after a reload of the console.
 * @param {number} tries
 */
function watchReplay(tries) {
  if (st.replayUrl || st.lessonState !== "ended" || tries <= 0) {
    return;
  }
  const again = () => setTimeout(() => watchReplay(tries - 1), 5000);
  apiJson("/api/recordings?lesson=" + encodeURIComponent(st.lesson), st.token).then((body) => {
    /** @type {any[]} */
    const mine = (body && Array.isArray(body.recordings) ? body.recordings : [])
      .filter((/** @type {any} */ r) => r && r.lesson === st.lesson);
    const rec = mine.find((r) => r.id === st.recordingId) || (st.recordingId ? null : mine[0]);
    if (rec) {
      st.recordingId = rec.id;
      st.replayUrl = typeof rec.replay_url === "string" ? rec.replay_url : null;
      render();
    }
    if (!st.replayUrl && (st.recordingId || tries > 55)) {
      again(); // packaging; or the catalog has not listed it yet
    }
  }, again);
}

/** @param {any} rec the recording state of welcome / a `recording` message */
function setRecording(rec) {
  if (rec && typeof rec.recording_id === "string" && rec.recording_id !== st.recordingId) {
    st.recordingId = rec.recording_id;
    st.replayUrl = null;
  }
}

/** Why the camera is not on, in words, for the start-without-camera notice. */
function cameraReason() {
  if (st.cameraError === "insecure") {
    return t("reason_insecure");
  }
  if (st.cameraPending) {
    return t("reason_pending");
  }
  return t("reason_failed", { reason: st.cameraError || "?" });
}

/** @param {string} state */
function renderStartWarning(state) {
  if (state === "live") {
    st.startWarning = false;
  }
  const show = st.startWarning && !st.stream && st.welcomed && state !== "live";
  startWarningEl.hidden = !show;
  if (show) {
    startWarningText.textContent = t("start_no_camera", { reason: cameraReason() });
  }
}

/** start-lesson with the camera on; without it, first say what is missing (start-anyway). */
function requestStart() {
  if (!st.stream) {
    st.startWarning = true;
    render();
    return;
  }
  sendStart();
}

function sendStart() {
  st.startWarning = false;
  signal && signal.send({ type: "start-lesson" });
  render();
}

function renderRoster() {
  const rooms = classrooms(st.peers);
  rosterBody.textContent = "";
  let connected = 0;
  rooms.forEach((p) => {
    const mediaState = p.media_state || "none";
    if (mediaState === "connected") {
      connected += 1;
    }
    const link = st.links[p.peer_id] || {};
    const tier = link.tier || p.tier || "";
    const tr = el("tr", { "data-peer-id": p.peer_id || "", "data-media-state": mediaState,
      "data-hand": p.hand ? "true" : "false", "data-tier": tier });
    if (p.hand) {
      tr.className = "hand-up";
    }
    const mediaCell = el("td");
    mediaCell.appendChild(el("span", { className: "dot media-" + mediaState }));
    const key = mediaState === "connecting" ? "media_connecting_state" : "media_" + mediaState;
    mediaCell.appendChild(document.createTextNode(" " + t(key)));
    mediaCell.title = t(key);
    const parts = [];
    if (tier) {
      parts.push(t("tier_" + tier));
    }
    if (typeof link.rtt_ms === "number") {
      parts.push("RTT " + Math.round(link.rtt_ms) + " ms");
    }
    if (typeof link.loss === "number") {
      parts.push(t("loss") + " " + (100 * link.loss).toFixed(1) + "%");
    }
    const name = p.name || p.peer_id || "";
    tr.appendChild(el("td", { className: "name", title: [name, p.school].filter(Boolean).join(" · ") }, name));
    tr.appendChild(mediaCell);
    tr.appendChild(el("td", { className: "link", title: parts.join(" · ") }, parts.join(" · ")));
    tr.appendChild(el("td", { className: "hand", title: p.hand ? t("hand_mark") : "" },
      p.hand ? t("hand_mark") : ""));
    rosterBody.appendChild(tr);
  });
  $("#roster-empty").hidden = rooms.length > 0;
  $("#roster-summary").textContent = rooms.length
    ? t("roster_summary", { online: rooms.length, connected })
    : "";
}

/** @param {string} title @param {string} detail */
function setFatal(title, detail) {
  st.fatal = { title, detail };
  stopPublish();
  if (signal) {
    signal.stop();
  }
  st.welcomed = false;
  render();
}

/* ------------------------------------------------------------ camera and publishing */

function openTeacherCamera() {
  const res = RESOLUTIONS[params.get("res") || "720"] || RESOLUTIONS["720"];
  const constraints = {
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    video: {
      width: { ideal: res.width },
      height: { ideal: res.height },
      frameRate: { ideal: 30, max: 30 }
    }
  };
  const missing = cameraUnavailable();
  if (missing) {
    st.cameraPending = false;
    st.cameraError = missing;
    render();
    return;
  }
  openCamera([constraints]).then(
    (stream) => {
      st.stream = stream;
      st.cameraPending = false;
      st.cameraError = null;
      preview.srcObject = stream;
      preview.play().catch(() => {});
      startPublish();
      if (st.startWarning && st.welcomed && st.lessonState !== "live") {
        sendStart(); // start was pressed while the browser still asked for the camera
      }
      render();
    },
    (err) => {
      st.cameraPending = false;
      st.cameraError = errorName(err);
      render();
    }
  );
}

function startPublish() {
  const stream = st.stream;
  if (publish.media || !stream || !signal || !allowed()) {
    return;
  }
  const shareStream = share.stream;
  const session = publish.open({
    purpose: "publish",
    signal,
    iceServers: st.iceServers,
    stats,
    setup: (pc) => {
      // m-line order (docs/two-way.md): camera video, then the share, then one audio
      stream.getVideoTracks().forEach((track) => {
        preferCodec(pc.addTransceiver(track, { direction: "sendonly", streams: [stream] }),
          "video", "VP8");
      });
      // the share's m-line, empty until share-screen puts a track on it
      share.sender = null;
      if (!share.unsupported) {
        const shareTrack = share.track();
        const tr = shareTrack && shareStream
          ? pc.addTransceiver(shareTrack, { direction: "sendonly", streams: [shareStream] })
          : pc.addTransceiver("video", { direction: "sendonly" });
        preferCodec(tr, "video", "VP8");
        share.sender = tr.sender;
      }
      stream.getAudioTracks().forEach((track) => {
        pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      });
    },
    onOfferSent: () => ledger.sent("publish"),
    onConnected: () => {
      st.mediaConnected = true;
      publish.trouble = false;
      publish.attempt = 0;
      const sharing = !!shareStream && shareStream === share.stream;
      if (sharing) {
        share.tuneSender();
      }
      signal && signal.send({ type: "share", on: sharing });
      render();
    },
    onStateChange: () => render(),
    onFail: publishFailed
  });
  st.publishes += 1; // publish connections made (the share does not make one)
  st.mediaConnected = false;
  session.start();
  render();
}

function stopPublish() {
  publish.stop();
  st.mediaConnected = false;
}

/** @param {string} reason */
function publishFailed(reason) {
  stopPublish();
  if (!allowed()) {
    render();
    return;
  }
  publish.retryLater(startPublish, reason);
  render();
}

/**
 * Every 2 s: the publish connected while the server says none of the teacher's media is in
 * the relay, for STALL_MS -> say so and publish again (with the link's back-off).
 */
function checkPublish() {
  const now = Date.now();
  if (!(st.mediaConnected && st.publisher === false && allowed())) {
    st.noMediaSince = 0;
    return;
  }
  if (!st.noMediaSince) {
    st.noMediaSince = now;
  } else if (now - st.noMediaSince >= STALL_MS) {
    st.noMediaSince = 0;
    st.publishStalled = true;
    publishFailed("connected, the server has no media for " + STALL_MS + " ms");
  }
}

function republish() {
  stopPublish();
  publish.attempt = 0;
  startPublish();
  render();
}

/* ------------------------------------------------------------ hand queue and stage */

/** @param {any} u an uplink message or an entry of welcome.uplinks */
function setUplink(u) {
  if (u && typeof u.peer_id === "string") {
    st.uplinks[u.peer_id] = { state: u.state, audio: u.audio, video: u.video, muted: u.muted };
  }
}

/**
 * Raise or lower one hand. `at` (server time of the raise, when the server says it) keeps
 * the queue oldest first, also for a classroom that reconnected and kept its place.
 * @param {string} peer @param {boolean} raised @param {unknown} [at]
 */
function setHand(peer, raised, at) {
  if (typeof at === "number") {
    st.handAt[peer] = at;
  }
  const i = st.hands.indexOf(peer);
  if (raised && i < 0) {
    st.hands.push(peer);
    st.hands.sort((a, b) => {
      const ta = st.handAt[a];
      const tb = st.handAt[b];
      return typeof ta === "number" && typeof tb === "number" ? ta - tb : 0;
    });
  } else if (!raised && i >= 0) {
    st.hands.splice(i, 1);
  }
}

/** The roster is the truth on who is here: hands of peers that left go, missed ones come. */
function syncHands() {
  /** @type {Set<string>} */
  const present = new Set();
  classrooms(st.peers).forEach((p) => {
    present.add(p.peer_id);
    setHand(p.peer_id, !!p.hand);
  });
  st.hands = st.hands.filter((peer) => present.has(peer));
}

function renderHands() {
  handQueueEl.textContent = "";
  st.hands.forEach((peer) => {
    const li = el("li", { "data-hand-item": peer });
    li.appendChild(el("span", { className: "hq-name" }, roomName(st.peers, peer)));
    const onStage = !!(st.stage && st.stage.peer_id === peer);
    if (!onStage) {
      const b = actionButton("call-on-stage", "call_on_stage", peer);
      setDisabled(b, !st.welcomed || st.lessonState === "ended");
      li.appendChild(b);
    }
    handQueueEl.appendChild(li);
  });
  $("#hands-empty").hidden = st.hands.length > 0;
}

/** A [data-action] press on a tile, the hand queue or the pager. @param {string} action @param {string} peer @param {Element} target */
function onAction(action, peer, target) {
  if (!signal) {
    return;
  }
  switch (action) {
    case "call-on-stage":
      signal.send({ type: "call-on-stage", peer_id: peer });
      break;
    case "leave-stage":
      signal.send({ type: "leave-stage" });
      break;
    case "mute-classroom":
      signal.send({
        type: "mute-classroom",
        peer_id: peer,
        on: target.getAttribute("aria-pressed") !== "true"
      });
      break;
    case "remove-classroom":
      // two presses within 5 s: a classroom is not thrown out by a slip of the mouse
      if (st.confirmRemove[peer] && Date.now() - st.confirmRemove[peer] < 5000) {
        delete st.confirmRemove[peer];
        signal.send({ type: "remove-classroom", peer_id: peer });
      } else {
        st.confirmRemove[peer] = Date.now();
        setTimeout(render, 5100);
      }
      break;
    case "grid-prev":
      grid.turnPage(-1);
      break;
    case "grid-next":
      grid.turnPage(1);
      break;
    default:
      return;
  }
  render();
}

/* ------------------------------------------------------------ messages */

/** @param {ReturnType<typeof lessonOf>} lesson */
function setLesson({ state, info }) {
  const previous = st.lessonState;
  if (state === "waiting" || state === "live" || state === "ended") {
    st.lessonState = state;
  }
  if (info && info.title) {
    st.lessonTitle = String(info.title);
  }
  if (st.lessonState === "ended") {
    if (previous !== "ended") {
      watchReplay(60);
    }
    stopPublish();
    grid.stop();
    publish.trouble = false;
    st.publisher = false;
    st.stage = null;
  } else if (previous !== st.lessonState) {
    publish.attempt = 0;
    startPublish();
    grid.link.attempt = 0;
    grid.start();
  }
}

/** @param {unknown} peers */
function setRoster(peers) {
  if (Array.isArray(peers)) {
    st.peers = peers.slice();
    syncHands();
  }
}

/** @param {Message} msg */
function onWelcome(msg) {
  st.welcomed = true;
  st.peerId = msg.peer_id;
  st.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
  publish.attempt = 0;
  publish.trouble = false;
  st.publisher = msg.media && typeof msg.media.publisher === "boolean" ? msg.media.publisher : null;
  st.publishStalled = false;
  st.noMediaSince = 0;
  if (msg.role !== "teacher") {
    setFatal("wrong_page", "wrong_page_detail");
    return;
  }
  ledger.clear();
  grid.reset();
  st.stage = msg.stage && msg.stage.peer_id ? msg.stage : null;
  st.hands = [];
  if (Array.isArray(msg.hands)) {
    msg.hands.forEach((/** @type {any} */ h) => {
      const peer = typeof h === "string" ? h : h && h.peer_id;
      if (typeof peer === "string") {
        setHand(peer, true, h && h.at);
      }
    });
  }
  st.uplinks = {};
  let ups = msg.uplinks;
  if (ups && !Array.isArray(ups) && typeof ups === "object") {
    const byPeer = ups;
    ups = Object.keys(byPeer).map((k) => {
      const u = byPeer[k] || {};
      return { peer_id: u.peer_id || k, state: u.state, audio: u.audio, video: u.video,
        muted: u.muted };
    });
  }
  if (Array.isArray(ups)) {
    ups.forEach(setUplink);
  }
  setRecording(msg.recording);
  const roster = msg.roster;
  setRoster(roster && !Array.isArray(roster) ? roster.peers : roster);
  setLesson(lessonOf(msg));
  startPublish();
  grid.start();
  if (st.mediaConnected && signal) {
    signal.send({ type: "share", on: !!share.stream });
  }
  render();
}

/** @param {Message} msg */
function onMessage(msg) {
  switch (msg.type) {
    case "refreshed": // the next peer connection uses the fresh TURN credentials
      if (Array.isArray(msg.ice_servers)) {
        st.iceServers = msg.ice_servers;
      }
      break;
    case "lesson":
      setLesson(lessonOf(msg));
      break;
    case "lesson-ending": // the timetable end plus the overrun (拖堂) is near
      endsAt = typeof msg.ends_at === "number" ? msg.ends_at * 1000 : 0;
      render();
      break;
    case "roster":
      setRoster(msg.peers);
      break;
    case "hand":
      st.peers.forEach((p) => {
        if (p.peer_id === msg.peer_id) {
          p.hand = !!msg.raised;
        }
      });
      setHand(msg.peer_id, !!msg.raised, msg.at);
      break;
    case "stage":
      st.stage = msg.peer_id ? { peer_id: msg.peer_id, name: msg.name, school: msg.school } : null;
      break;
    case "grid":
      grid.applySlots(msg.slots);
      break;
    case "uplink":
      setUplink(msg);
      break;
    case "media":
      st.publisher = !!msg.publisher;
      if (st.publisher) {
        st.publishStalled = false;
        st.noMediaSince = 0;
      }
      break;
    case "recording":
      setRecording(msg);
      break;
    case "tier":
      // a classroom moved to another tier; rtt_ms / loss: its link at that moment
      if (msg.peer_id) {
        st.links[msg.peer_id] = { tier: msg.tier, rtt_ms: msg.rtt_ms, loss: msg.loss };
      }
      break;
    case "answer":
      ledger.answered(msg.purpose);
      if (msg.purpose === "publish" && publish.media) {
        publish.media.handleAnswer(msg.sdp);
      } else if (msg.purpose === "grid") {
        grid.answer(msg.sdp);
      }
      break;
    case "error":
      onError(msg);
      break;
    default:
      break;
  }
  render();
}

/** @param {Message} msg */
function onError(msg) {
  const code = msg.code || "internal";
  const { purpose, ignore } = errorTarget(msg, ledger, "publish");
  if (ignore) {
    return;
  }
  if (purpose === "grid") {
    grid.refused(code);
    render();
    return;
  }
  if (purpose === "publish" && code === "bad_sdp" && !share.unsupported) {
    // the server refused the share's m-line: publish the camera alone from now on
    if (share.refused()) {
      notice.show(t("share_failed", { reason: code }));
    }
    republish();
    return;
  }
  if (purpose && publish.media) {
    if (code === "lesson_ended" || code === "lesson_not_live") {
      stopPublish(); // startPublish() runs again when the lesson message (re)opens it
    } else {
      publishFailed(code);
    }
  }
  notice.show(errorText(code));
}

/* ------------------------------------------------------------ stats hook */

window.classroomStats = function () {
  const pc = publish.media && publish.media.pc;
  const ready = Promise.all([pc ? stats.poll(pc) : null, grid.poll()]);
  return ready.then(() => {
    const totals = stats.totals();
    return {
      tiles: grid.tileStats(),
      stageAudioBytes: grid.audioBytes,
      gridState: grid.state(),
      sharing: !!share.stream,
      publishes: st.publishes,
      hands: st.hands.slice(),
      stage: st.stage ? st.stage.peer_id : null,
      connectionState: pc ? pc.connectionState : "new",
      framesDecoded: totals.framesDecoded,
      audioBytesReceived: totals.audioBytesReceived,
      videoTier: /** @type {string | null} */ (null),
      lessonState: st.lessonState || "waiting",
      framesEncoded: totals.framesEncoded,
      audioBytesSent: totals.audioBytesSent,
      publishStalled: st.publishStalled,
      gridResubscribes: grid.resubscribes
    };
  });
};

/* ------------------------------------------------------------ start */

function main() {
  attachTeacherQuiz();
  const controls = startButton.parentElement;
  if (controls) {
    controls.insertAdjacentElement("afterend", startWarningEl);
  }
  startButton.addEventListener("click", requestStart);
  startAnyway.addEventListener("click", sendStart);
  endButton.addEventListener("click", () => {
    signal && signal.send({ type: "end-lesson" });
  });
  shareButton.addEventListener("click", () => share.toggle());
  const ownListeners = new Set(["start-lesson", "end-lesson", "share-screen", "start-anyway"]);
  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target.closest("[data-action]") : null;
    if (!target || (target instanceof HTMLButtonElement && target.disabled)) {
      return;
    }
    const action = target.getAttribute("data-action") || "";
    if (ownListeners.has(action)) {
      return; // their own listeners
    }
    onAction(action, target.getAttribute("data-peer-id") || "", target);
  });

  const problem = startProblem(st.token);
  if (problem) {
    setFatal(problem.title, problem.detail);
    return;
  }

  signal = new Signal({
    token: st.token,
    lesson: st.lesson,
    onWelcome,
    onMessage,
    onClose: () => {
      st.welcomed = false;
      st.lost = true;
      stopPublish();
      grid.stop();
      publish.trouble = false;
      st.publisher = null;
      st.publishStalled = false;
      render();
    },
    onFatal: () => {
      setFatal("invalid_link", "invalid_link_detail");
    }
  });
  signal.connect();
  openTeacherCamera();
  setInterval(() => {
    if (publish.media && publish.media.pc) {
      stats.poll(publish.media.pc);
    }
    checkPublish();
    if (grid.link.media) {
      grid.poll();
    }
  }, 2000);
  render();
}

main();
