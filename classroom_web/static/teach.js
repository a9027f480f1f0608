/* Teacher console: /teach/{lesson}#token=...
 *
 * Camera and microphone preview, publishing to the relay over WebRTC (offer with
 * purpose "publish"), start / end the lesson, and the roster of remote classrooms with
 * their media connection state and raised hands. Reconnects the socket and the publish
 * connection by itself like the classroom view does.
 *
 * Two-way lesson (docs/two-way.md): a "grid" connection receives GRID_SLOTS video slots and
 * one audio line (the classroom on stage). The page shows the classrooms a page at a time as
 * tiles (name, uplink state, tier, hand, stage), tells the server which classrooms are
 * visible (grid-view) and puts each slot of the reply (grid {slots}) on its tile. The hand
 * queue lists raised hands oldest first; call-on-stage / leave-stage / mute-classroom /
 * remove-classroom act per tile. The publish always carries a second video m-line for the
 * share: share-screen puts the screen on it in place (replaceTrack, contentHint "detail")
 * and says share {on}, so the camera is never re-published (no blink).
 */
(function () {
  "use strict";

  var C = window.Classroom;
  var t = C.t;
  C.applyI18n();

  var $ = function (sel) {
    return document.querySelector(sel);
  };
  var preview = $("#preview");
  var statusEl = $("#status");
  var mediaStatusEl = $("#media-status");
  var startButton = $('[data-action="start-lesson"]');
  var endButton = $('[data-action="end-lesson"]');
  var rosterBody = $("#roster-body");
  var shareButton = $('[data-action="share-screen"]');
  var gridEl = $("#grid");
  var stageAudio = $("#stage-audio");
  var handQueueEl = $("[data-hand-queue]");

  var GRID_SLOTS = 9; // video slots of the grid connection = tiles per page
  var SHARE_ENCODING = { maxBitrate: 1200000, maxFramerate: 15 };

  var RESOLUTIONS = {
    "360": { width: 640, height: 360 },
    "540": { width: 960, height: 540 },
    "720": { width: 1280, height: 720 }
  };

  var st = {
    links: {}, // peer_id -> {tier, rtt_ms, loss} from tier events
    token: C.readToken(),
    lesson: C.lessonFromPath(),
    fatal: null,
    welcomed: false,
    lost: false,
    peerId: null,
    lessonState: null,
    lessonTitle: "",
    iceServers: [],
    stream: null,
    cameraError: null,
    cameraPending: true,
    media: null,
    mediaAttempt: 0,
    mediaRetry: null,
    mediaTrouble: false,
    mediaConnected: false,
    publisher: null,
    peers: [],
    notice: "",
    noticeTimer: null,
    // two-way lesson
    page: 0,
    hands: [], // classroom peer ids with a raised hand, oldest first
    handAt: {}, // peer_id -> server time of its raise, when known
    stage: null, // {peer_id, name, school} or null
    uplinks: {}, // peer_id -> {state, audio, video, muted}
    confirmRemove: {}, // peer_id -> time of the first press of remove-classroom
    share: { stream: null, pending: false, sender: null, unsupported: false },
    publishes: 0,
    startWarning: false // start pressed with no camera: the notice and start-anyway are shown
  };
  // The grid connection, on the fields C.stopMedia / C.retryMedia use.
  var grid = {
    media: null,
    mediaRetry: null,
    mediaAttempt: 0,
    mediaTrouble: false,
    connected: false,
    answered: false,
    disabled: null,
    slots: [], // video transceivers, index = slot
    audio: null, // the stage audio transceiver
    streams: [], // slot -> MediaStream of that slot's track
    assign: {}, // slot -> peer_id (from the last grid reply)
    base: {}, // slot -> that receiver's framesDecoded when the peer got the slot (null: pending)
    cur: {}, // slot -> last framesDecoded read
    frames: {}, // peer_id -> frames decoded in earlier slot assignments
    audioBytes: 0,
    lastView: ""
  };
  var tiles = {}; // peer_id -> tile element
  var stats = new C.StatsTotals();
  var ledger = new C.OfferLedger();
  var signal = null;

  /* ------------------------------------------------------------ rendering */

  function statusText() {
    if (st.fatal) {
      return t(st.fatal.title) + (C.lang === "en" ? ". " : "。") + t(st.fatal.detail);
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
    if (st.mediaTrouble) {
      return t("publish_retry");
    }
    if (st.lessonState === "live") {
      return t("lesson_live_teacher");
    }
    if (st.cameraPending) {
      return t("camera_opening");
    }
    return st.mediaConnected ? t("ready_to_start") : t("publish_connecting");
  }

  function render() {
    var text = statusText();
    if (st.notice) {
      text = st.notice + " — " + text;
    }
    statusEl.textContent = text;
    statusEl.setAttribute("data-fatal", st.fatal ? "true" : "false");

    var state = st.lessonState || "waiting";
    var badge = $("#lesson-state");
    badge.textContent = t("state_" + state);
    badge.setAttribute("data-state", state);
    $("#lesson-name").textContent = st.lessonTitle || st.lesson;

    startButton.disabled = !st.welcomed || state === "live";
    renderStartWarning(state);
    endButton.disabled = !st.welcomed || state !== "live";

    var media = [];
    if (st.media && st.media.pc) {
      media.push(t(st.mediaConnected ? "publish_ok" : "publish_connecting"));
    }
    if (st.publisher) {
      media.push(t("publisher_on"));
    }
    if (st.share.stream) {
      media.push(t("sharing"));
    }
    mediaStatusEl.textContent = media.join(" · ");
    shareButton.disabled = !st.welcomed || !st.stream || st.share.pending ||
      st.share.unsupported || state === "ended";
    shareButton.setAttribute("aria-pressed", st.share.stream ? "true" : "false");
    $("#share-text").textContent = t(st.share.stream ? "stop_share" : "share_screen");
    renderRoster();
    renderHands();
    renderGrid();
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

  function renderStartWarning(state) {
    if (!startWarningEl) {
      return; // not built yet
    }
    if (state === "live") {
      st.startWarning = false;
    }
    var show = st.startWarning && !st.stream && st.welcomed && state !== "live";
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
    var rooms = st.peers.filter(function (p) {
      return p && p.role === "classroom";
    });
    rosterBody.textContent = "";
    var connected = 0;
    rooms.forEach(function (p) {
      var mediaState = p.media_state || "none";
      if (mediaState === "connected") {
        connected += 1;
      }
      var tr = document.createElement("tr");
      tr.setAttribute("data-peer-id", p.peer_id || "");
      tr.setAttribute("data-media-state", mediaState);
      tr.setAttribute("data-hand", p.hand ? "true" : "false");
      if (p.hand) {
        tr.className = "hand-up";
      }
      var name = document.createElement("td");
      name.className = "name";
      name.textContent = p.name || p.peer_id || "";
      var school = document.createElement("td");
      school.textContent = p.school || "";
      var mediaCell = document.createElement("td");
      var dot = document.createElement("span");
      dot.className = "dot media-" + mediaState;
      mediaCell.appendChild(dot);
      var key = mediaState === "connecting" ? "media_connecting_state" : "media_" + mediaState;
      mediaCell.appendChild(document.createTextNode(" " + t(key)));
      var link = st.links[p.peer_id] || {};
      var tier = link.tier || p.tier || "";
      tr.setAttribute("data-tier", tier);
      var linkCell = document.createElement("td");
      linkCell.className = "link";
      var parts = [];
      if (tier) {
        parts.push(t("tier_" + tier));
      }
      if (typeof link.rtt_ms === "number") {
        parts.push("RTT " + Math.round(link.rtt_ms) + " ms");
      }
      if (typeof link.loss === "number") {
        parts.push(t("loss") + " " + (100 * link.loss).toFixed(1) + "%");
      }
      linkCell.textContent = parts.join(" · ");
      var hand = document.createElement("td");
      hand.className = "hand";
      hand.textContent = p.hand ? t("hand_mark") : "";
      tr.appendChild(name);
      tr.appendChild(school);
      tr.appendChild(mediaCell);
      tr.appendChild(linkCell);
      tr.appendChild(hand);
      rosterBody.appendChild(tr);
    });
    $("#roster-empty").hidden = rooms.length > 0;
    $("#roster-summary").textContent = rooms.length
      ? t("roster_summary", { online: rooms.length, connected: connected })
      : "";
  }

  function notice(text) {
    st.notice = text;
    if (st.noticeTimer) {
      clearTimeout(st.noticeTimer);
    }
    st.noticeTimer = setTimeout(function () {
      st.notice = "";
      st.noticeTimer = null;
      render();
    }, 6000);
    render();
  }

  function setFatal(title, detail) {
    st.fatal = { title: title, detail: detail };
    stopPublish();
    if (signal) {
      signal.stop();
    }
    st.welcomed = false;
    render();
  }

  /* ------------------------------------------------------------ camera and publishing */

  function openCamera() {
    var res = RESOLUTIONS[C.params.get("res") || "720"] || RESOLUTIONS["720"];
    var constraints = {
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      video: {
        width: { ideal: res.width },
        height: { ideal: res.height },
        frameRate: { ideal: 30, max: 30 }
      }
    };
    if (!C.secureContext() || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      st.cameraPending = false;
      st.cameraError = C.secureContext() ? "getUserMedia" : "insecure";
      render();
      return;
    }
    navigator.mediaDevices.getUserMedia(constraints).then(
      function (stream) {
        st.stream = stream;
        st.cameraPending = false;
        st.cameraError = null;
        preview.srcObject = stream;
        preview.play().catch(function () {});
        startPublish();
        if (st.startWarning && st.welcomed && st.lessonState !== "live") {
          sendStart(); // start was pressed while the browser still asked for the camera
        }
        render();
      },
      function (err) {
        st.cameraPending = false;
        st.cameraError = (err && (err.name || err.message)) || "error";
        render();
      }
    );
  }

  function startPublish() {
    if (st.media || st.fatal || !st.stream || !st.welcomed || st.lessonState === "ended") {
      return;
    }
    if (st.mediaRetry) {
      clearTimeout(st.mediaRetry);
      st.mediaRetry = null;
    }
    var stream = st.stream;
    var share = st.share.stream;
    var session = new C.MediaSession({
      purpose: "publish",
      signal: signal,
      iceServers: st.iceServers,
      stats: stats,
      setup: function (pc) {
        // m-line order (docs/two-way.md): camera video, then the share, then one audio
        stream.getVideoTracks().forEach(function (track) {
          C.preferCodec(pc.addTransceiver(track, { direction: "sendonly", streams: [stream] }),
            "video", "VP8");
        });
        // the share's m-line, empty until share-screen puts a track on it
        st.share.sender = null;
        if (!st.share.unsupported) {
          var shareTrack = share ? share.getVideoTracks()[0] : null;
          var tr = shareTrack
            ? pc.addTransceiver(shareTrack, { direction: "sendonly", streams: [share] })
            : pc.addTransceiver("video", { direction: "sendonly" });
          C.preferCodec(tr, "video", "VP8");
          st.share.sender = tr.sender;
        }
        stream.getAudioTracks().forEach(function (track) {
          pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
        });
      },
      onOfferSent: function () {
        ledger.sent("publish");
      },
      onConnected: function () {
        if (session === st.media) {
          st.mediaConnected = true;
          st.mediaTrouble = false;
          st.mediaAttempt = 0;
          var sharing = !!share && share === st.share.stream;
          if (sharing) {
            tuneShareSender();
          }
          signal.send({ type: "share", on: sharing });
          render();
        }
      },
      onStateChange: function () {
        render();
      },
      onFail: function (reason) {
        if (session === st.media) {
          publishFailed(reason);
        }
      }
    });
    st.media = session;
    st.publishes += 1; // publish connections made (the share does not make one)
    st.mediaConnected = false;
    session.start();
    render();
  }

  function stopPublish() {
    C.stopMedia(st);
    st.mediaConnected = false;
  }

  function publishFailed(reason) {
    stopPublish();
    if (st.fatal || !st.welcomed || st.lessonState === "ended") {
      render();
      return;
    }
    C.retryMedia(st, startPublish, "teacher: publish", reason);
    render();
  }

  /* ------------------------------------------------------------ screen share */

  function tuneShareSender() {
    var sender = st.share.sender;
    if (!sender || !sender.getParameters || !sender.setParameters) {
      return;
    }
    try {
      var params = sender.getParameters();
      if (params.encodings && params.encodings.length) {
        params.encodings[0].maxBitrate = SHARE_ENCODING.maxBitrate;
        params.encodings[0].maxFramerate = SHARE_ENCODING.maxFramerate;
      }
      params.degradationPreference = "maintain-resolution"; // slides stay sharp
      sender.setParameters(params).catch(function () {});
    } catch (e) {
      /* the browser's defaults */
    }
  }

  function republish() {
    stopPublish();
    st.mediaAttempt = 0;
    startPublish();
    render();
  }

  function startShare() {
    if (st.share.stream || st.share.pending) {
      return;
    }
    var md = navigator.mediaDevices;
    if (!md || !md.getDisplayMedia) {
      notice(t("share_failed", { reason: "getDisplayMedia" }));
      return;
    }
    st.share.pending = true;
    render();
    md.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 15 } }, audio: false }).then(
      function (stream) {
        st.share.pending = false;
        var track = stream.getVideoTracks()[0];
        if (!track) {
          notice(t("share_failed", { reason: "no video" }));
          return;
        }
        if ("contentHint" in track) {
          track.contentHint = "detail";
        }
        track.addEventListener("ended", function () {
          if (st.share.stream === stream) {
            stopShare(); // the browser's own "stop sharing" bar
          }
        });
        st.share.stream = stream;
        swapShareTrack(track, function () {
          if (st.share.stream === stream) {
            tuneShareSender();
            render();
          }
        });
      },
      function (err) {
        st.share.pending = false;
        notice(t("share_failed", { reason: (err && (err.name || err.message)) || "error" }));
      }
    );
  }

  function stopShare() {
    var stream = st.share.stream;
    if (!stream) {
      return;
    }
    st.share.stream = null;
    stream.getTracks().forEach(function (track) {
      track.stop();
    });
    swapShareTrack(null);
  }

  /**
   * Put `track` (null: none) on the publish's share m-line in place, saying share {on}
   * first (the relay then decodes the share from its very first keyframe). Not connected
   * yet, or the browser would not swap: publish again (that publish carries the screen).
   */
  function swapShareTrack(track, done) {
    var sender = st.share.sender;
    if (!sender || !sender.replaceTrack || !st.mediaConnected) {
      if (!track && signal) {
        signal.send({ type: "share", on: false });
      }
      republish();
      return;
    }
    signal.send({ type: "share", on: !!track });
    sender.replaceTrack(track).then(done || function () {}, function () {
      republish();
    });
    render();
  }

  /* ------------------------------------------------------------ the grid connection */

  function startGrid() {
    if (grid.media || grid.disabled || st.fatal || !st.welcomed || st.lessonState === "ended") {
      return;
    }
    if (grid.mediaRetry) {
      clearTimeout(grid.mediaRetry);
      grid.mediaRetry = null;
    }
    var slots = [];
    var audioTx = null;
    var streams = [];
    var session = new C.MediaSession({
      purpose: "grid",
      signal: signal,
      iceServers: st.iceServers,
      setup: function (pc) {
        for (var i = 0; i < GRID_SLOTS; i++) {
          var tr = pc.addTransceiver("video", { direction: "recvonly" });
          C.preferCodec(tr, "video", "VP8", true); // the relay forwards VP8 only
          slots.push(tr);
        }
        audioTx = pc.addTransceiver("audio", { direction: "recvonly" });
        C.preferCodec(audioTx, "audio", "opus", true);
        grid.audio = audioTx;
      },
      onOfferSent: function () {
        ledger.sent("grid");
      },
      onTrack: function (event) {
        if (session !== grid.media) {
          return;
        }
        if (event.transceiver === audioTx || event.track.kind === "audio") {
          stageAudio.srcObject = new MediaStream([event.track]);
          stageAudio.play().catch(function () {});
          return;
        }
        var slot = slots.indexOf(event.transceiver);
        if (slot >= 0) {
          streams[slot] = new MediaStream([event.track]);
          renderGrid();
        }
      },
      onConnected: function () {
        if (session === grid.media) {
          grid.connected = true;
          grid.mediaTrouble = false;
          grid.mediaAttempt = 0;
          render();
        }
      },
      onStateChange: function () {
        render();
      },
      onFail: function (reason) {
        if (session === grid.media) {
          gridFailed(reason);
        }
      }
    });
    grid.media = session;
    grid.slots = slots;
    grid.streams = streams;
    grid.connected = false;
    grid.answered = false;
    grid.assign = {};
    grid.base = {};
    grid.cur = {};
    grid.lastView = "";
    grid.audio = null;
    session.start();
    render();
  }

  function stopGrid() {
    foldGridFrames();
    C.stopMedia(grid);
    grid.connected = false;
    grid.answered = false;
    grid.slots = [];
    grid.streams = [];
    grid.assign = {};
    grid.audio = null;
    stageAudio.srcObject = null;
  }

  function gridFailed(reason) {
    stopGrid();
    if (st.fatal || !st.welcomed || st.lessonState === "ended" || grid.disabled) {
      render();
      return;
    }
    C.retryMedia(grid, startGrid, "teacher: grid", reason);
    render();
  }

  var GRID_FINAL = { bad_message: true, forbidden: true, bad_sdp: true };

  function gridRefused(code) {
    if (GRID_FINAL[code]) {
      grid.disabled = code; // an older server: no grid in this session
      stopGrid();
      if (window.console) {
        console.info("teacher: grid refused (" + code + "), not offered again");
      }
      return;
    }
    if (code === "lesson_ended") {
      stopGrid();
      return;
    }
    gridFailed(code);
  }

  /** Frames of each slot's current peer go to that peer's total when the slot changes. */
  function foldGridFrames() {
    for (var slot in grid.assign) {
      var peer = grid.assign[slot];
      grid.frames[peer] = tileFrames(peer);
    }
  }

  function tileFrames(peer) {
    var total = grid.frames[peer] || 0;
    for (var slot in grid.assign) {
      if (grid.assign[slot] === peer && grid.base[slot] !== null &&
          grid.base[slot] !== undefined && grid.cur[slot] !== undefined) {
        total = (grid.frames[peer] || 0) + Math.max(0, grid.cur[slot] - grid.base[slot]);
      }
    }
    return total;
  }

  function applySlots(slots) {
    if (!Array.isArray(slots)) {
      return;
    }
    var next = {};
    slots.forEach(function (s) {
      if (s && typeof s.slot === "number" && typeof s.peer_id === "string" &&
          s.slot >= 0 && s.slot < GRID_SLOTS) {
        next[s.slot] = s.peer_id;
      }
    });
    for (var slot = 0; slot < GRID_SLOTS; slot++) {
      if (grid.assign[slot] !== next[slot]) {
        var old = grid.assign[slot];
        if (old) {
          grid.frames[old] = tileFrames(old);
        }
        grid.base[slot] = null; // read at the next poll: frames before that are not counted
      }
    }
    grid.assign = next;
    pollGrid();
  }

  function pollGrid() {
    var slots = grid.slots;
    var reads = slots.map(function (tr) {
      return C.rtpCounts(tr.receiver);
    });
    reads.push(C.rtpCounts(grid.audio && grid.audio.receiver));
    return Promise.all(reads).then(function (r) {
      if (slots !== grid.slots) {
        return;
      }
      for (var i = 0; i < slots.length; i++) {
        grid.cur[i] = r[i].framesDecoded;
        if (grid.base[i] === null) {
          grid.base[i] = r[i].framesDecoded;
        }
      }
      grid.audioBytes = Math.max(grid.audioBytes, r[slots.length].bytesReceived);
    });
  }

  function classrooms() {
    return st.peers.filter(function (p) {
      return p && p.role === "classroom";
    });
  }

  function pageCount(n) {
    return Math.max(1, Math.ceil(n / GRID_SLOTS));
  }

  function visibleRooms() {
    var rooms = classrooms();
    st.page = Math.min(st.page, pageCount(rooms.length) - 1);
    return rooms.slice(st.page * GRID_SLOTS, (st.page + 1) * GRID_SLOTS);
  }

  /** Tell the server which classrooms are visible (once the grid connection is answered). */
  function sendGridView() {
    if (!grid.answered || !signal) {
      return;
    }
    var ids = visibleRooms().map(function (p) {
      return p.peer_id;
    });
    var key = JSON.stringify(ids);
    if (key === grid.lastView) {
      return;
    }
    if (signal.send({ type: "grid-view", peers: ids })) {
      grid.lastView = key;
    }
  }

  function slotOf(peer) {
    for (var slot in grid.assign) {
      if (grid.assign[slot] === peer) {
        return Number(slot);
      }
    }
    return -1;
  }

  function roomName(peer) {
    for (var i = 0; i < st.peers.length; i++) {
      if (st.peers[i].peer_id === peer) {
        return st.peers[i].name || peer;
      }
    }
    return peer;
  }

  function button(action, key, peer) {
    var b = document.createElement("button");
    b.type = "button";
    b.setAttribute("data-action", action);
    b.setAttribute("data-peer-id", peer);
    b.textContent = t(key);
    return b;
  }

  function makeTile(peer) {
    var tile = document.createElement("div");
    tile.className = "tile";
    tile.setAttribute("data-tile", peer);
    var v = document.createElement("video");
    v.muted = true; // a tile never plays sound: the stage's sound comes on the grid audio
    v.autoplay = true;
    v.playsInline = true;
    v.setAttribute("playsinline", "");
    var empty = document.createElement("div");
    empty.className = "tile-empty";
    var top = document.createElement("div");
    top.className = "tile-top";
    var name = document.createElement("span");
    name.className = "tile-name";
    var hand = document.createElement("span");
    hand.className = "tile-hand";
    hand.textContent = "✋ " + t("hand_mark");
    var badges = document.createElement("span");
    badges.className = "tile-badges";
    top.appendChild(name);
    top.appendChild(hand);
    top.appendChild(badges);
    var info = document.createElement("div");
    info.className = "tile-info";
    var actions = document.createElement("div");
    actions.className = "tile-actions";
    actions.appendChild(button("call-on-stage", "call_on_stage", peer));
    actions.appendChild(button("leave-stage", "leave_stage", peer));
    actions.appendChild(button("mute-classroom", "mute_classroom", peer));
    actions.appendChild(button("remove-classroom", "remove_classroom", peer));
    tile.appendChild(v);
    tile.appendChild(empty);
    tile.appendChild(top);
    tile.appendChild(info);
    tile.appendChild(actions);
    return tile;
  }

  function badge(cls, text) {
    var b = document.createElement("span");
    b.className = "tile-badge " + cls;
    b.textContent = text;
    return b;
  }

  function renderGrid() {
    var rooms = classrooms();
    var visible = visibleRooms();
    var pages = pageCount(rooms.length);
    $("#grid-page").textContent = t("grid_page", { page: st.page + 1, pages: pages });
    $('[data-action="grid-prev"]').disabled = st.page <= 0;
    $('[data-action="grid-next"]').disabled = st.page >= pages - 1;
    var stageEl = $("#stage-now");
    stageEl.textContent = st.stage
      ? t("stage_now", { name: st.stage.name || roomName(st.stage.peer_id) })
      : t("stage_none");
    stageEl.setAttribute("data-stage", st.stage ? "on" : "none");
    var gs = "";
    if (grid.media && !grid.connected) {
      gs = t("grid_connecting");
    }
    $("#grid-status").textContent = gs;

    var keep = {};
    visible.forEach(function (p, index) {
      var peer = p.peer_id;
      keep[peer] = true;
      var tile = tiles[peer];
      if (!tile) {
        tile = tiles[peer] = makeTile(peer);
      }
      if (gridEl.children[index] !== tile) {
        gridEl.insertBefore(tile, gridEl.children[index] || null);
      }
      updateTile(tile, p);
    });
    Object.keys(tiles).forEach(function (peer) {
      if (!keep[peer]) {
        var tile = tiles[peer];
        tile.querySelector("video").srcObject = null;
        if (tile.parentNode) {
          tile.parentNode.removeChild(tile);
        }
        delete tiles[peer];
      }
    });
    sendGridView();
  }

  function updateTile(tile, p) {
    var peer = p.peer_id;
    var up = st.uplinks[peer] || {};
    var onStage = !!(st.stage && st.stage.peer_id === peer);
    var muted = !!up.muted;
    var state = up.state || "none";
    var link = st.links[peer] || {};
    var tier = link.tier || p.tier || "";
    tile.setAttribute("data-hand", p.hand ? "true" : "false");
    tile.setAttribute("data-state", state);
    tile.setAttribute("data-tier", tier);
    tile.setAttribute("data-stage", onStage ? "true" : "false");
    tile.setAttribute("data-muted", muted ? "true" : "false");
    tile.querySelector(".tile-name").textContent =
      [p.name || peer, p.school].filter(Boolean).join(" · ");
    tile.querySelector(".tile-hand").hidden = !p.hand;
    var badges = tile.querySelector(".tile-badges");
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
    var stateKey = state === "connecting" ? "media_connecting_state" : "media_" + state;
    var info = [t(Object.prototype.hasOwnProperty.call(C.strings.zh, stateKey) ? stateKey
      : "media_none")];
    if (tier) {
      info.push(t("tier_" + tier));
    }
    tile.querySelector(".tile-info").textContent = info.join(" · ");

    var slot = slotOf(peer);
    var v = tile.querySelector("video");
    var stream = slot >= 0 ? grid.streams[slot] || null : null;
    if (v.srcObject !== stream) {
      v.srcObject = stream;
    }
    if (stream && v.paused) {
      v.play().catch(function () {});
    }
    var empty = tile.querySelector(".tile-empty");
    empty.hidden = !!stream;
    empty.textContent = t("uplink_state_none");

    var canAct = st.welcomed && st.lessonState !== "ended";
    var call = tile.querySelector('[data-action="call-on-stage"]');
    var leave = tile.querySelector('[data-action="leave-stage"]');
    var mute = tile.querySelector('[data-action="mute-classroom"]');
    var remove = tile.querySelector('[data-action="remove-classroom"]');
    call.hidden = onStage;
    leave.hidden = !onStage;
    call.disabled = leave.disabled = mute.disabled = remove.disabled = !canAct;
    mute.setAttribute("aria-pressed", muted ? "true" : "false");
    mute.textContent = t(muted ? "unmute_classroom" : "mute_classroom");
    var confirming = st.confirmRemove[peer] && Date.now() - st.confirmRemove[peer] < 5000;
    remove.setAttribute("data-confirm", confirming ? "true" : "false");
    remove.textContent = t(confirming ? "confirm_remove" : "remove_classroom");
  }

  /* ------------------------------------------------------------ hand queue and stage */

  function setUplink(u) {
    if (u && typeof u.peer_id === "string") {
      st.uplinks[u.peer_id] = { state: u.state, audio: u.audio, video: u.video, muted: u.muted };
    }
  }

  /**
   * Raise or lower one hand. `at` (server time of the raise, when the server says it) keeps
   * the queue oldest first, also for a classroom that reconnected and kept its place.
   */
  function setHand(peer, raised, at) {
    if (typeof at === "number") {
      st.handAt[peer] = at;
    }
    var i = st.hands.indexOf(peer);
    if (raised && i < 0) {
      st.hands.push(peer);
      st.hands.sort(function (a, b) {
        var ta = st.handAt[a];
        var tb = st.handAt[b];
        return typeof ta === "number" && typeof tb === "number" ? ta - tb : 0;
      });
    } else if (!raised && i >= 0) {
      st.hands.splice(i, 1);
    }
  }

  /** The roster is the truth on who is here: hands of peers that left go, missed ones come. */
  function syncHands() {
    var present = {};
    classrooms().forEach(function (p) {
      present[p.peer_id] = true;
      if (p.hand) {
        setHand(p.peer_id, true);
      } else {
        setHand(p.peer_id, false);
      }
    });
    st.hands = st.hands.filter(function (peer) {
      return present[peer];
    });
  }

  function renderHands() {
    handQueueEl.textContent = "";
    st.hands.forEach(function (peer) {
      var li = document.createElement("li");
      li.setAttribute("data-hand-item", peer);
      var name = document.createElement("span");
      name.className = "hq-name";
      name.textContent = roomName(peer);
      li.appendChild(name);
      var onStage = !!(st.stage && st.stage.peer_id === peer);
      if (!onStage) {
        var b = button("call-on-stage", "call_on_stage", peer);
        b.disabled = !st.welcomed || st.lessonState === "ended";
        li.appendChild(b);
      }
      handQueueEl.appendChild(li);
    });
    $("#hands-empty").hidden = st.hands.length > 0;
  }

  function onAction(action, peer, el) {
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
          on: el.getAttribute("aria-pressed") !== "true"
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
        st.page = Math.max(0, st.page - 1);
        break;
      case "grid-next":
        st.page += 1;
        break;
      default:
        return;
    }
    render();
  }

  /* ------------------------------------------------------------ messages */

  function setLesson(state, info) {
    var previous = st.lessonState;
    if (state === "waiting" || state === "live" || state === "ended") {
      st.lessonState = state;
    }
    if (info && info.title) {
      st.lessonTitle = String(info.title);
    }
    if (st.lessonState === "ended") {
      stopPublish();
      stopGrid();
      st.mediaTrouble = false;
      st.publisher = false;
      st.stage = null;
    } else if (previous !== st.lessonState) {
      st.mediaAttempt = 0;
      startPublish();
      grid.mediaAttempt = 0;
      startGrid();
    }
  }

  function setRoster(peers) {
    if (Array.isArray(peers)) {
      st.peers = peers.slice();
      syncHands();
    }
  }

  function onWelcome(msg) {
    st.welcomed = true;
    st.peerId = msg.peer_id;
    st.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
    st.mediaAttempt = 0;
    st.mediaTrouble = false;
    st.publisher = msg.media && typeof msg.media.publisher === "boolean" ? msg.media.publisher : null;
    if (msg.role !== "teacher") {
      setFatal("wrong_page", "wrong_page_detail");
      return;
    }
    ledger.clear();
    grid.disabled = null;
    grid.mediaAttempt = 0;
    st.stage = msg.stage && msg.stage.peer_id ? msg.stage : null;
    st.hands = [];
    if (Array.isArray(msg.hands)) {
      msg.hands.forEach(function (h) {
        var peer = typeof h === "string" ? h : h && h.peer_id;
        if (typeof peer === "string") {
          setHand(peer, true, h && h.at);
        }
      });
    }
    st.uplinks = {};
    var ups = msg.uplinks;
    if (ups && !Array.isArray(ups) && typeof ups === "object") {
      ups = Object.keys(ups).map(function (k) {
        var u = ups[k] || {};
        return { peer_id: u.peer_id || k, state: u.state, audio: u.audio, video: u.video,
          muted: u.muted };
      });
    }
    if (Array.isArray(ups)) {
      ups.forEach(setUplink);
    }
    var roster = msg.roster;
    setRoster(roster && !Array.isArray(roster) ? roster.peers : roster);
    setLesson(msg.lesson_state || (msg.lesson_info && msg.lesson_info.state), msg.lesson_info);
    startPublish();
    startGrid();
    if (st.mediaConnected) {
      signal.send({ type: "share", on: !!st.share.stream });
    }
    render();
  }

  function onMessage(msg) {
    switch (msg.type) {
      case "refreshed": // the next peer connection uses the fresh TURN credentials
        if (Array.isArray(msg.ice_servers)) {
          st.iceServers = msg.ice_servers;
        }
        break;
      case "lesson":
        setLesson(msg.lesson_state || (msg.lesson_info && msg.lesson_info.state), msg.lesson_info);
        break;
      case "roster":
        setRoster(msg.peers);
        break;
      case "hand":
        st.peers.forEach(function (p) {
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
        applySlots(msg.slots);
        break;
      case "uplink":
        setUplink(msg);
        break;
      case "media":
        st.publisher = !!msg.publisher;
        break;
      case "tier":
        // a classroom moved to another tier; rtt_ms / loss: its link at that moment
        if (msg.peer_id) {
          st.links[msg.peer_id] = { tier: msg.tier, rtt_ms: msg.rtt_ms, loss: msg.loss };
        }
        break;
      case "answer":
        ledger.answered(msg.purpose);
        if (msg.purpose === "publish" && st.media) {
          st.media.handleAnswer(msg.sdp);
        } else if (msg.purpose === "grid" && grid.media) {
          grid.media.handleAnswer(msg.sdp);
          grid.answered = true;
          grid.lastView = "";
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

  function onError(msg) {
    var code = msg.code || "internal";
    if (code === "unknown_type" && C.TWO_WAY_TYPES[msg.ref]) {
      if (window.console) {
        console.info("teacher: the server does not know " + msg.ref);
      }
      return;
    }
    var purpose = null;
    if (msg.ref === "offer") {
      purpose = ledger.refused(msg) || "publish";
    } else if (msg.ref === "ice") {
      purpose = msg.purpose || null;
      if (!purpose) {
        return; // a late candidate of a refused connection
      }
    } else if (code === "bad_sdp" || code === "media_failed") {
      purpose = msg.purpose || "publish";
    }
    if (purpose === "grid") {
      gridRefused(code);
      render();
      return;
    }
    if (purpose === "publish" && code === "bad_sdp" && !st.share.unsupported) {
      // the server refused the share's m-line: publish the camera alone from now on
      st.share.unsupported = true;
      var stream = st.share.stream;
      st.share.stream = null;
      if (stream) {
        stream.getTracks().forEach(function (track) {
          track.stop();
        });
        notice(t("share_failed", { reason: code }));
      }
      republish();
      return;
    }
    if (purpose && st.media) {
      if (code === "lesson_ended" || code === "lesson_not_live") {
        stopPublish(); // startPublish() runs again when the lesson message (re)opens it
      } else {
        publishFailed(code);
      }
    }
    notice(C.errorText(code));
  }

  /* ------------------------------------------------------------ stats hook */

  window.classroomStats = function () {
    var pc = st.media && st.media.pc;
    var ready = Promise.all([pc ? stats.poll(pc) : null, pollGrid()]);
    return ready.then(function () {
      var totals = stats.totals();
      var tileStats = {};
      Object.keys(tiles).forEach(function (peer) {
        tileStats[peer] = { framesDecoded: tileFrames(peer), slot: slotOf(peer) };
      });
      return {
        tiles: tileStats,
        stageAudioBytes: grid.audioBytes,
        gridState: grid.media && grid.media.pc ? grid.media.pc.connectionState
          : grid.disabled ? "refused" : "new",
        sharing: !!st.share.stream,
        publishes: st.publishes,
        hands: st.hands.slice(),
        stage: st.stage ? st.stage.peer_id : null,
        connectionState: pc ? pc.connectionState : "new",
        framesDecoded: totals.framesDecoded,
        audioBytesReceived: totals.audioBytesReceived,
        videoTier: null,
        lessonState: st.lessonState || "waiting",
        framesEncoded: totals.framesEncoded,
        audioBytesSent: totals.audioBytesSent
      };
    });
  };

  /* ------------------------------------------------------------ start */

  // The notice shown when start is pressed with no camera (and its start-anyway button).
  var startWarningEl = document.createElement("div");
  startWarningEl.className = "status start-warning";
  startWarningEl.setAttribute("role", "alert");
  startWarningEl.setAttribute("data-start-warning", "");
  startWarningEl.hidden = true;
  var startWarningText = document.createElement("p");
  var startAnyway = document.createElement("button");
  startAnyway.type = "button";
  startAnyway.setAttribute("data-action", "start-anyway");
  startAnyway.textContent = t("start_anyway");
  startWarningEl.appendChild(startWarningText);
  startWarningEl.appendChild(startAnyway);
  startButton.parentNode.insertAdjacentElement("afterend", startWarningEl);

  startButton.addEventListener("click", requestStart);
  startAnyway.addEventListener("click", sendStart);
  endButton.addEventListener("click", function () {
    signal && signal.send({ type: "end-lesson" });
  });
  shareButton.addEventListener("click", function () {
    if (st.share.stream) {
      stopShare();
    } else {
      startShare();
    }
  });
  document.addEventListener("click", function (event) {
    var el = event.target && event.target.closest ? event.target.closest("[data-action]") : null;
    if (!el || el.disabled) {
      return;
    }
    var action = el.getAttribute("data-action");
    if (action === "start-lesson" || action === "end-lesson" || action === "share-screen" ||
        action === "start-anyway") {
      return; // their own listeners
    }
    onAction(action, el.getAttribute("data-peer-id"), el);
  });

  if (!st.token) {
    setFatal("no_token", "no_token_detail");
    return;
  }
  if (typeof RTCPeerConnection === "undefined") {
    setFatal("no_webrtc", "wrong_page_detail");
    return;
  }

  signal = new C.Signal({
    token: st.token,
    lesson: st.lesson,
    onWelcome: onWelcome,
    onMessage: onMessage,
    onClose: function () {
      st.welcomed = false;
      st.lost = true;
      stopPublish();
      stopGrid();
      st.mediaTrouble = false;
      st.publisher = null;
      render();
    },
    onFatal: function () {
      setFatal("invalid_link", "invalid_link_detail");
    }
  });
  signal.connect();
  openCamera();
  setInterval(function () {
    if (st.media && st.media.pc) {
      stats.poll(st.media.pc);
    }
    if (grid.media) {
      pollGrid();
    }
  }, 2000);
  render();
})();
