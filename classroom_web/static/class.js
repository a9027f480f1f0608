// @ts-check
/* Classroom view (TV mode): /class/{lesson}#token=...
 *
 * Joins from one link and then never needs a click: hello -> welcome -> subscribe (recvonly
 * video + audio), the teacher full screen, status in plain words.
 *
 * Two-way lesson (docs/two-way.md): the subscribe offer carries, in m-line order, video:
 * teacher camera, teacher share, stage; audio: teacher, stage (an older server that refuses
 * it with bad_sdp gets the 1 video + 1 audio offer). The teacher's share is shown big with
 * the teacher small; a classroom on stage is shown beside the teacher (split) or small over
 * the share. The classroom's camera and microphone go out on a second connection
 * (uplink.js). Local teacher controls: mute-room, camera, hand, leave-stage while on stage.
 * Reconnects by itself:
 *   - socket closed            -> tear down media, reconnect (0.5 s doubling to 5 s), hello,
 *                                 subscribe again
 *   - pc failed / disconnected -> tear down, subscribe again with the same backoff
 *     for more than 3 s
 *   - live, teacher publishing -> "connected, no picture for 5 s" (or "sound only"), never
 *     but no new frames for 5 s     "live" over a black screen; subscribe again (watchdog.js:
 *                                   every 5 s, retry delay at most 2 s; spaced out while the
 *                                   sound flows); the teacher's media back (media
 *                                   {publisher: true}) and no frame within 1.5 s -> at once
 *   - lesson ended             -> media stops and stays stopped; the socket stays, so a
 *                                 restarted lesson resumes
 *   - invalid / expired /      -> "link invalid or expired", no more reconnecting
 *     wrong-lesson token
 *
 * Modules: protocol.js (socket), peer.js (connections), stats.js (classroomStats totals),
 * watchdog.js (no media on a connected connection), playback.js (elements, autoplay),
 * uplink.js (camera to the teacher), quiz-class.js.
 */
import { $ } from "./dom.js";
import { applyI18n, t } from "./i18n.js";
import { Notice, errorText, startProblem } from "./notices.js";
import { MediaLink, OfferLedger, errorTarget, preferCodec } from "./peer.js";
import { Playback } from "./playback.js";
import { Signal, lessonFromPath, lessonOf, readToken } from "./protocol.js";
import { attachClassroomQuiz } from "./quiz-class.js";
import { StatsTotals, rtpCounts } from "./stats.js";
import { Uplink } from "./uplink.js";
import { MediaWatch, PUBLISHER_GRACE_MS, reportMediaHealth } from "./watchdog.js";

/** @typedef {import("./protocol.js").Message} Message */
/** @typedef {import("./notices.js").Fatal} Fatal */
/** @typedef {{peer_id: string, name?: string, school?: string}} StageInfo */
/** @typedef {{cam?: RTCRtpTransceiver, share?: RTCRtpTransceiver, stage?: RTCRtpTransceiver, audio?: RTCRtpTransceiver, stageAudio?: RTCRtpTransceiver}} Receivers */

applyI18n();

const video = $("#teacher-video", HTMLVideoElement);
const statusEl = $("#status");
const detailEl = $("#detail");
const overlay = $("#overlay");
const noticesRow = $("#tv-notices");
const mediaRow = $("#tv-media");
const joinButton = $('[data-action="join"]', HTMLButtonElement);
const joinHint = $("#join-hint");
const raiseButton = $('[data-action="raise-hand"]', HTMLButtonElement);
const lowerButton = $('[data-action="lower-hand"]', HTMLButtonElement);
const lowButton = $('[data-action="low-bandwidth"]', HTMLButtonElement);
const handNote = $("#hand-note");
const shareVideo = $("#share-video", HTMLVideoElement);
const stageVideo = $("#stage-video", HTMLVideoElement);
const selfView = $("#self-view", HTMLVideoElement);
const muteButton = $('[data-action="mute-room"]', HTMLButtonElement);
const cameraButton = $('[data-action="camera"]', HTMLButtonElement);
const leaveStageButton = $('#on-stage [data-action="leave-stage"]', HTMLButtonElement);
const consentButton = $("[data-action=recording-consent]", HTMLButtonElement);

const st = {
  token: readToken(),
  lesson: lessonFromPath(),
  /** @type {Fatal | null} */
  fatal: null,
  welcomed: false,
  lost: false,
  /** @type {string | null} */
  peerId: null,
  /** @type {string | null} */
  role: null,
  school: "",
  /** @type {string | null} */
  lessonState: null,
  lessonTitle: "",
  /** @type {RTCIceServer[]} */
  iceServers: [],
  /** @type {boolean | null} null = not told yet */
  publisher: null,
  hand: false,
  /** @type {MediaStream | null} */
  stream: null,
  /** @type {string | null} */
  tier: null,
  lowBandwidth: false,
  recording: "off",
  consentNeeded: false,
  // two-way lesson
  layout: "full", // subscribe offer: "full" (3 video + 2 audio m-lines) or "basic" (1 + 1)
  /** @type {Receivers | null} the subscribe session's transceivers by role */
  rx: null,
  roleBase: { stageFrames: 0, stageAudio: 0, shareFrames: 0 },
  roleLive: { stageFrames: 0, stageAudio: 0, shareFrames: 0 },
  /** @type {StageInfo | null} the classroom on stage */
  stage: null,
  /** @type {number | null} Date.now() when this page last learned of a stage change */
  stageChangedAt: null,
  share: false, // the teacher shares a screen
  mutedByTeacher: false,
  removed: false
};
const media = new MediaLink("classroom: media"); // the subscribe connection
const watchdog = new MediaWatch("classroom: media"); // its teacher's picture and sound
const stats = new StatsTotals();
const ledger = new OfferLedger();
const notice = new Notice(render);
const playback = new Playback({ teacher: video, share: shareVideo, stage: stageVideo }, render);
/** @type {Signal | null} */
let signal = null;
const uplink = new Uplink({
  signal: () => signal,
  ledger,
  render,
  allowed: () => !st.fatal && st.welcomed && st.role === "classroom" && st.lessonState !== "ended",
  finished: () => !!st.fatal || st.lessonState === "ended",
  onStage,
  iceServers: () => st.iceServers
});

function onStage() {
  return !!(st.stage && st.peerId && st.stage.peer_id === st.peerId);
}

/* ------------------------------------------------------------ rendering */

function render() {
  let kind;
  let main;
  let detail = "";
  /** @type {string | null} the status's data-state when it is not `kind` */
  let shown = null;
  if (st.fatal) {
    kind = "fatal";
    main = t(st.fatal.title);
    detail = t(st.fatal.detail);
  } else if (!st.welcomed) {
    kind = st.lost ? "reconnecting" : "connecting";
    main = t(kind);
  } else if (st.lessonState === "ended") {
    kind = "ended";
    main = t("ended");
  } else if (st.lessonState === "live") {
    kind = "live";
    main = t("live");
    const health = watchdog.state;
    if (watchdog.stalled) {
      // connected (or reconnecting) with nothing new for 5 s: said instead of "live"
      shown = "no-media";
      main = t(st.tier === "audio" ? "no_sound" : health === "sound-only" ? "sound_only"
        : "no_picture");
    } else if (media.trouble) {
      shown = "no-media";
      detail = t("media_reconnecting");
    } else if (st.publisher === false) {
      shown = "no-media"; // the server says the teacher's media is not in the relay
      detail = t(watchdog.lastFrameAt ? "teacher_media_stopped" : "no_teacher_video");
    } else if (health !== "flowing") {
      detail = t("media_connecting");
    }
  } else {
    kind = "waiting";
    main = t("waiting");
  }
  if (!detail && notice.text) {
    detail = notice.text;
  }
  statusEl.textContent = main;
  statusEl.setAttribute("data-state", shown || kind);
  reportMediaHealth(pageHealth());
  detailEl.textContent = detail;
  detailEl.hidden = !detail;
  const showJoin = playback.autoplayBlocked && !st.fatal && st.welcomed && st.lessonState !== "ended";
  joinButton.hidden = !showJoin;
  joinHint.hidden = !showJoin;
  // Live, the status is a small badge in the notices row (with its detail): the picture
  // row is left to the videos and the quiz. Otherwise it fills the picture row.
  const compact = kind === "live" && !showJoin;
  overlay.classList.toggle("compact", compact);
  overlay.setAttribute("data-kind", kind);
  const home = compact ? noticesRow : mediaRow;
  if (overlay.parentElement !== home) {
    if (compact) {
      home.prepend(overlay);
    } else {
      home.appendChild(overlay);
    }
  }
  document.body.setAttribute("data-kind", kind);
  document.body.setAttribute("data-join", showJoin ? "on" : "off");

  const canHand = st.welcomed && st.role === "classroom" && st.lessonState !== "ended";
  raiseButton.hidden = st.hand || st.role !== "classroom";
  lowerButton.hidden = !st.hand || st.role !== "classroom";
  raiseButton.disabled = !canHand;
  lowerButton.disabled = !canHand;
  handNote.hidden = !(st.hand && canHand);
  lowButton.hidden = st.role !== "classroom";
  lowButton.disabled = !canHand;
  lowButton.setAttribute("aria-pressed", st.lowBandwidth ? "true" : "false");
  $("#low-bw-text").textContent = t(st.lowBandwidth ? "low_bandwidth_on" : "low_bandwidth");
  $("#audio-only").hidden = !(kind === "live" && st.tier === "audio" && !watchdog.stalled);
  $("#lesson-name").textContent = st.lessonTitle || st.lesson;
  const rec = $("#rec");
  rec.hidden = !(st.welcomed && st.lessonState !== "ended" && st.recording !== "off");
  rec.setAttribute("data-state", st.recording);
  $("#rec-text").textContent = t(st.recording === "paused" ? "recording_paused" : "recording_on");
  $("#consent").hidden = !(st.welcomed && st.consentNeeded && st.role === "classroom" &&
                           st.lessonState !== "ended");
  renderTwoWay(kind, canHand);
}

/**
 * The page's media health (watchdog.js) for the on-air badge and classroomStats: the
 * watchdog's while live; "no-media" too once the server says the teacher's media, which
 * this page had shown, stopped.
 * @returns {import("./watchdog.js").Health}
 */
function pageHealth() {
  if (st.fatal || !st.welcomed || st.lessonState !== "live") {
    return "idle";
  }
  if (!watchdog.stalled && st.publisher === false) {
    return watchdog.lastFrameAt ? "no-media" : "idle";
  }
  return watchdog.state;
}

/** @param {string} kind @param {boolean} canAct */
function renderTwoWay(kind, canAct) {
  const live = kind === "live";
  const full = st.layout === "full";
  const shareOn = live && full && st.share;
  let stageKind = "none";
  if (live && full && st.stage) {
    stageKind = onStage() ? "self" : "other";
  }
  document.body.setAttribute("data-share", shareOn ? "on" : "off");
  document.body.setAttribute("data-stage", stageKind);
  shareVideo.hidden = !shareOn;
  $("#share-note").hidden = !shareOn;
  $("#stage-box").hidden = stageKind !== "other";
  $("#stage-name").textContent = st.stage
    ? t("stage_label", { name: [st.stage.school, st.stage.name].filter(Boolean).join(" · ") })
    : "";
  const camera = uplink.camera;
  const selfShown = stageKind === "self" && !!camera.stream;
  $("#self-box").hidden = !selfShown;
  if (selfShown && selfView.srcObject !== camera.stream) {
    selfView.srcObject = camera.stream;
    selfView.play().catch(() => {});
  }
  $("#on-stage").hidden = stageKind !== "self";
  leaveStageButton.disabled = !canAct;
  $("#teacher-muted").hidden = !(st.mutedByTeacher && st.welcomed && !st.fatal);

  const isRoom = st.role === "classroom";
  const stream = camera.stream;
  const hasAudio = !!(stream && stream.getAudioTracks().length);
  const hasVideo = !!(stream && stream.getVideoTracks().length);
  muteButton.hidden = !isRoom || !hasAudio;
  cameraButton.hidden = !isRoom || !hasVideo;
  muteButton.disabled = !canAct;
  cameraButton.disabled = !canAct;
  const local = uplink.local;
  muteButton.setAttribute("aria-pressed", local.audio ? "false" : "true");
  cameraButton.setAttribute("aria-pressed", local.video ? "false" : "true");
  $("#mute-room-text").textContent = t(local.audio ? "mute_room" : "unmute_room");
  $("#camera-text").textContent = t(local.video ? "camera_off" : "camera_on");

  const note = $("#uplink-note");
  let text = "";
  if (isRoom && st.welcomed && st.lessonState !== "ended") {
    if (camera.error && !stream) {
      text = t(camera.error === "insecure" ? "uplink_insecure"
        : camera.error === "NotAllowedError" ? "uplink_denied" : "uplink_none");
    } else if (uplink.connected) {
      text = t("uplink_ok");
    } else if (uplink.link.trouble) {
      text = t("uplink_retry");
    } else if (uplink.link.media) {
      text = t("uplink_connecting");
    }
  }
  note.textContent = text;
  note.hidden = !text;
  note.setAttribute("data-state", uplink.state());
}

/** @param {any} rec the recording state of welcome / recording */
function setRecording(rec) {
  if (rec && typeof rec.state === "string") {
    st.recording = rec.state;
  }
  if (rec && Array.isArray(rec.consent_schools) && st.school &&
      rec.consent_schools.indexOf(st.school) >= 0) {
    st.consentNeeded = false; // acknowledged for this school (maybe by another room)
  }
}

/** @param {string} title @param {string} detail */
function setFatal(title, detail) {
  st.fatal = { title, detail };
  stopMedia();
  uplink.closeCamera();
  selfView.srcObject = null;
  if (signal) {
    signal.stop();
  }
  st.welcomed = false;
  render();
}

/* ------------------------------------------------------------ the subscribe connection */

function startMedia() {
  if (media.media || st.fatal || !st.welcomed || !signal || st.lessonState === "ended") {
    return;
  }
  const stream = new MediaStream();
  const shareStream = new MediaStream();
  const stageStream = new MediaStream();
  /** @type {Receivers} */
  const rx = {};
  const layout = st.layout;
  const session = media.open({
    purpose: "subscribe",
    signal,
    iceServers: st.iceServers,
    stats,
    setup: (pc) => {
      /** @type {RTCRtpTransceiverInit} */
      const recv = { direction: "recvonly" };
      if (layout === "full") {
        // m-line order (docs/two-way.md): video camera, share, stage; audio teacher, stage
        rx.cam = pc.addTransceiver("video", recv);
        rx.share = pc.addTransceiver("video", recv);
        rx.stage = pc.addTransceiver("video", recv);
        rx.audio = pc.addTransceiver("audio", recv);
        rx.stageAudio = pc.addTransceiver("audio", recv);
      } else {
        rx.cam = pc.addTransceiver("video", recv);
        rx.audio = pc.addTransceiver("audio", recv);
      }
      Object.values(rx).forEach((tr) => {
        const kind = tr.receiver.track.kind;
        preferCodec(tr, kind, kind === "video" ? "VP8" : "opus", true);
      });
    },
    onOfferSent: () => ledger.sent("subscribe"),
    onTurnRefused: () => notice.show(t("turn_refused")),
    onTrack: (event) => {
      const tr = event.transceiver;
      let target = stream;
      let el = video;
      if (tr && tr === rx.share) {
        target = shareStream;
        el = shareVideo;
      } else if (tr && (tr === rx.stage || tr === rx.stageAudio)) {
        target = stageStream;
        el = stageVideo;
      }
      target.addTrack(event.track);
      playback.show(el, target);
    },
    onConnected: () => {
      media.trouble = false;
      render();
    },
    onStateChange: () => render(),
    onFail: mediaFailed
  });
  st.stream = stream;
  st.rx = rx;
  watchdog.newSession(Date.now());
  session.start();
  render();
}

function stopMedia() {
  media.stop();
  watchdog.paused();
  st.rx = null;
  foldRoleStats();
}

/** @param {string} reason */
function mediaFailed(reason) {
  stopMedia();
  if (st.fatal || !st.welcomed || st.lessonState === "ended") {
    render();
    return;
  }
  media.retryLater(startMedia, reason);
  render();
}

/* ------------------------------------------------------------ per-role stats */

/** @type {("stageFrames" | "stageAudio" | "shareFrames")[]} */
const ROLE_KEYS = ["stageFrames", "stageAudio", "shareFrames"];

function foldRoleStats() {
  for (const key of ROLE_KEYS) {
    st.roleBase[key] += st.roleLive[key];
    st.roleLive[key] = 0;
  }
}

/** The stage and share receivers' own counters (this session's, never backwards). */
function pollRoles() {
  const rx = st.rx;
  if (!rx || !rx.stage || !rx.stageAudio || !rx.share) {
    return Promise.resolve();
  }
  return Promise.all([
    rtpCounts(rx.stage.receiver),
    rtpCounts(rx.stageAudio.receiver),
    rtpCounts(rx.share.receiver)
  ]).then((r) => {
    if (rx !== st.rx) {
      return;
    }
    const live = st.roleLive;
    live.stageFrames = Math.max(live.stageFrames, r[0].framesDecoded);
    live.stageAudio = Math.max(live.stageAudio, r[1].bytesReceived);
    live.shareFrames = Math.max(live.shareFrames, r[2].framesDecoded);
  });
}

/** What the subscribe connection should carry now (watchdog.js). @param {import("./peer.js").MediaSession} session */
function expectation(session) {
  const live = st.welcomed && !st.fatal && st.lessonState === "live" && st.publisher !== false;
  return {
    // on the audio-only tier no frames come by design: the sound is what is expected
    video: live && st.tier !== "audio",
    audio: live,
    connected: session.connected && !!session.pc && session.pc.connectionState === "connected"
  };
}

/** Once a second: stats for the totals, and the "no media while connected" watchdog. */
function watch() {
  pollRoles();
  const session = media.media;
  if (!session || !session.pc) {
    return;
  }
  const rx = st.rx || {};
  Promise.all([
    stats.poll(session.pc),
    rtpCounts(rx.cam && rx.cam.receiver),
    rtpCounts(rx.share && rx.share.receiver),
    rtpCounts(rx.audio && rx.audio.receiver)
  ]).then(([counts, cam, shared, audio]) => {
    if (!counts || session !== media.media) {
      return;
    }
    const now = Date.now();
    const before = watchdog.state;
    const expect = expectation(session);
    // the teacher's pictures (camera, share) and the teacher's sound of this connection
    const state = watchdog.update({ frames: cam.framesDecoded + shared.framesDecoded,
      audio: audio.bytesReceived, packets: cam.packetsReceived + shared.packetsReceived },
    expect, now);
    if (state === "flowing") {
      media.trouble = false;
      media.attempt = 0;
    }
    const why = watchdog.due(expect, now);
    if (why) {
      resubscribe(state, why);
      return;
    }
    if (before !== state) {
      render();
      if (state === "flowing" && session.turnRefused) {
        notice.show(t("turn_refused")); // the picture came another way: say the relay refused
      }
    }
  });
}

/**
 * Connected but nothing came (watchdog.js): a new subscribe connection, soon.
 * @param {string} state @param {"stall" | "grace"} why
 */
function resubscribe(state, why) {
  const delay = watchdog.retryDelay(media.attempt, why);
  watchdog.resubscribed();
  stopMedia();
  media.retryLater(startMedia, why === "grace"
    ? "the teacher's media is back, none on this connection" : "no media (" + state + ")", delay);
  render();
}

/** The server says the teacher's media is in the relay (again): media {publisher: true}. */
function teacherBack() {
  media.attempt = 0;
  const session = media.media;
  if (session && session.connected) {
    // the connection may carry it on: a new frame within the grace, or a new one at once
    watchdog.expectFrom(Date.now(), PUBLISHER_GRACE_MS);
  } else if (!session) {
    media.cancelRetry(); // waiting out a back-off: subscribe now
    startMedia();
  }
}

/* ------------------------------------------------------------ messages */

/** @param {Message} msg */
function onWelcome(msg) {
  st.welcomed = true;
  st.peerId = msg.peer_id;
  st.role = msg.role;
  st.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
  st.hand = false;
  st.publisher = msg.media && typeof msg.media.publisher === "boolean" ? msg.media.publisher : null;
  media.attempt = 0;
  media.trouble = false;
  st.tier = null; // a new session starts on the top tier ...
  ledger.clear();
  uplink.reset();
  st.stage = msg.stage && msg.stage.peer_id ? msg.stage : null;
  st.share = !!(msg.share && (msg.share === true || msg.share.on));
  st.mutedByTeacher = false;
  if (st.lowBandwidth && msg.role === "classroom" && signal) {
    signal.send({ type: "low-bandwidth", on: true }); // ... unless the button is on
  }
  $("#room-name").textContent = [msg.school, msg.name].filter(Boolean).join(" · ");
  if (msg.role !== "classroom" && msg.role !== "teacher") {
    setFatal("wrong_page", "wrong_page_detail");
    return;
  }
  syncHand(msg.roster);
  st.school = msg.school || "";
  setRecording(msg.recording);
  st.consentNeeded = !!msg.recording_consent_required;
  setLesson(lessonOf(msg));
  startMedia();
  if (msg.role === "classroom" && st.lessonState !== "ended") {
    if (!uplink.local.audio || !uplink.local.video) {
      uplink.sendState(); // the new session starts "on": say what the local teacher turned off
    }
    uplink.openCamera();
    uplink.start();
  }
  render();
}

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
    stopMedia();
    watchdog.reset();
    media.trouble = false;
    st.hand = false;
    st.stage = null;
    st.share = false;
    playback.clear();
    uplink.closeCamera(); // the camera light goes off with the lesson
    selfView.srcObject = null;
  } else if (previous !== st.lessonState) {
    watchdog.expectFrom(Date.now());
    media.attempt = 0;
    startMedia();
    if (st.welcomed && st.role === "classroom") {
      uplink.link.attempt = 0;
      uplink.openCamera();
      uplink.start();
    }
  }
}

/** @param {any} roster a roster message's peers, or welcome.roster */
function syncHand(roster) {
  const peers = roster && Array.isArray(roster.peers) ? roster.peers : roster;
  if (!Array.isArray(peers)) {
    return;
  }
  for (const p of peers) {
    if (p && p.peer_id === st.peerId) {
      st.hand = !!p.hand;
    }
  }
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
    case "roster":
      syncHand(msg.peers);
      break;
    case "hand":
      if (msg.peer_id === st.peerId) {
        st.hand = !!msg.raised;
      }
      break;
    case "media":
      // true also while this page thought so already: the relay's publisher (re)started
      // (an edge that became the origin may not have said false in between)
      console.info("classroom: the teacher's media in the relay: " + !!msg.publisher);
      st.publisher = !!msg.publisher;
      if (st.publisher) {
        teacherBack();
      }
      break;
    case "answer":
      ledger.answered(msg.purpose);
      if (msg.purpose === "subscribe" && media.media) {
        media.media.handleAnswer(msg.sdp);
      } else if (msg.purpose === "uplink" && uplink.link.media) {
        uplink.link.media.handleAnswer(msg.sdp);
      }
      break;
    case "stage":
      if ((st.stage ? st.stage.peer_id : null) !== (msg.peer_id || null)) {
        st.stageChangedAt = Date.now();
      }
      st.stage = msg.peer_id ? { peer_id: msg.peer_id, name: msg.name, school: msg.school } : null;
      break;
    case "share":
      st.share = !!msg.on;
      break;
    case "muted":
      st.mutedByTeacher = !!msg.on;
      break;
    case "uplink":
      if (msg.peer_id === st.peerId && typeof msg.muted === "boolean") {
        st.mutedByTeacher = msg.muted;
      }
      break;
    case "removed":
      st.removed = true;
      setFatal("removed", "removed_detail");
      return;
    case "recording":
      setRecording(msg);
      break;
    case "tier":
      if (typeof msg.tier === "string" && (!msg.peer_id || msg.peer_id === st.peerId)) {
        st.tier = msg.tier;
        watchdog.expectFrom(Date.now()); // video pauses on "audio" and resumes after it
      }
      break;
    case "error":
      onError(msg);
      break;
    default:
      break;
  }
  uplink.resize();
  render();
}

/** @param {Message} msg */
function onError(msg) {
  const code = msg.code || "internal";
  const { purpose, ignore } = errorTarget(msg, ledger, "subscribe");
  if (ignore) {
    return;
  }
  if (purpose === "uplink") {
    uplink.refused(code);
    if (code === "too_many_tracks" || code === "forbidden") {
      notice.show(errorText(code));
    } else {
      render();
    }
    return;
  }
  if (code === "uplink_over_cap") {
    notice.show(errorText(code));
    return;
  }
  if (purpose === "subscribe" && code === "bad_sdp" && st.layout === "full") {
    // an older server: the 1 video + 1 audio offer, at once
    st.layout = "basic";
    stopMedia();
    startMedia();
    render();
    return;
  }
  if (purpose) {
    if (code === "lesson_ended" || code === "lesson_not_live") {
      // Wait for the lesson message that (re)opens it; startMedia() runs then.
      stopMedia();
      if (code === "lesson_not_live" && st.lessonState !== "ended") {
        media.retry = window.setTimeout(() => {
          media.retry = null;
          startMedia();
        }, 5000);
      }
    } else if (media.media) {
      mediaFailed(code);
    }
  }
  if (code === "lesson_ended" && msg.ref === "offer") {
    return; // the lesson message says it in plain words
  }
  notice.show(errorText(code));
}

/* ------------------------------------------------------------ stats hook */

window.classroomStats = function () {
  const session = media.media;
  const pc = session && session.pc;
  const ready = Promise.all([pc ? stats.poll(pc) : null, pollRoles(), uplink.poll()]);
  return ready.then(() => {
    const totals = stats.totals();
    const hasVideo = !!(st.stream && st.stream.getVideoTracks().length && media.media);
    /** @type {Record<string, number>} */
    const roles = {};
    for (const key of ROLE_KEYS) {
      roles[key] = st.roleBase[key] + st.roleLive[key];
    }
    return {
      connectionState: pc ? pc.connectionState : "new",
      framesDecoded: totals.framesDecoded,
      audioBytesReceived: totals.audioBytesReceived,
      videoTier: hasVideo ? st.tier || "high" : null,
      lessonState: st.lessonState || "waiting",
      // watchdog.js: idle | waiting | flowing | sound-only | no-media; re-subscribes asked
      mediaHealth: pageHealth(),
      resubscribes: watchdog.total,
      // two-way lesson
      stageFramesDecoded: roles.stageFrames,
      stageAudioBytesReceived: roles.stageAudio,
      shareFramesDecoded: roles.shareFrames,
      uplinkState: uplink.state(),
      uplinkFramesEncoded: uplink.framesEncoded,
      uplinkAudio: uplink.local.audio,
      uplinkVideo: uplink.local.video,
      onStage: onStage(),
      stageChangedAt: st.stageChangedAt,
      mutedByTeacher: st.mutedByTeacher,
      subscribeLayout: st.layout,
      // TURN: the subscribe connection's selected ICE pair, and a refusal
      candidate: pc ? stats.candidate(pc) : null,
      turnRefused: !!(session && session.turnRefused)
    };
  });
};

/* ------------------------------------------------------------ start */

function main() {
  attachClassroomQuiz();
  joinButton.addEventListener("click", () => playback.join());
  playback.fullscreenOnDoubleClick();
  raiseButton.addEventListener("click", () => {
    signal && signal.send({ type: "raise-hand" });
  });
  lowerButton.addEventListener("click", () => {
    signal && signal.send({ type: "lower-hand" });
  });
  lowButton.addEventListener("click", () => {
    if (signal) {
      st.lowBandwidth = !st.lowBandwidth;
      signal.send({ type: "low-bandwidth", on: st.lowBandwidth });
      render();
    }
  });
  muteButton.addEventListener("click", () => {
    uplink.toggle("audio");
    render();
  });
  cameraButton.addEventListener("click", () => {
    uplink.toggle("video");
    render();
  });
  leaveStageButton.addEventListener("click", () => {
    signal && signal.send({ type: "leave-stage" });
  });
  consentButton.addEventListener("click", () => {
    if (signal) {
      signal.send({ type: "recording-consent" });
      st.consentNeeded = false; // the local teacher has acknowledged; the server keeps the record
      render();
    }
  });

  const keepScreenOn = () => {
    if (navigator.wakeLock && document.visibilityState === "visible") {
      navigator.wakeLock.request("screen").catch(() => {});
    }
  };
  document.addEventListener("visibilitychange", keepScreenOn);

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
      stopMedia();
      uplink.stop();
      media.trouble = false;
      uplink.link.trouble = false;
      render();
    },
    onFatal: (code) => {
      if (code === "removed") {
        st.removed = true;
        setFatal("removed", "removed_detail");
        return;
      }
      setFatal("invalid_link", "invalid_link_detail");
    }
  });
  signal.connect();
  setInterval(() => {
    watch();
    if (media.media) {
      playback.keepPlaying();
    }
  }, 1000);
  keepScreenOn();
  render();
}

main();
