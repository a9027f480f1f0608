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
 * (purpose "uplink": echo cancellation, noise suppression, auto gain; 640x360 sent as a
 * 320x180 thumbnail at ~150 kbit/s, full size at ~300 kbit/s while on stage), re-made by
 * itself after a drop. Local teacher controls: mute-room, camera (uplink-state to the
 * server), hand, leave-stage while on stage. Reconnects by itself:
 *   - socket closed            -> tear down media, reconnect (0.5 s doubling to 5 s), hello,
 *                                 subscribe again
 *   - pc failed / disconnected -> tear down, subscribe again with the same backoff
 *     for more than 3 s
 *   - live, teacher publishing -> renegotiate (stall limit 6 s doubling to 30 s)
 *     but no frames decoded
 *   - lesson ended             -> media stops and stays stopped; the socket stays, so a
 *                                 restarted lesson resumes
 *   - invalid / expired /      -> "link invalid or expired", no more reconnecting
 *     wrong-lesson token
 */
(function () {
  "use strict";

  var C = window.Classroom;
  var t = C.t;
  C.applyI18n();

  var $ = function (sel) {
    return document.querySelector(sel);
  };
  var video = $("#teacher-video");
  var statusEl = $("#status");
  var detailEl = $("#detail");
  var overlay = $("#overlay");
  var joinButton = $('[data-action="join"]');
  var joinHint = $("#join-hint");
  var raiseButton = $('[data-action="raise-hand"]');
  var lowerButton = $('[data-action="lower-hand"]');
  var handNote = $("#hand-note");
  var shareVideo = $("#share-video");
  var stageVideo = $("#stage-video");
  var selfView = $("#self-view");
  var muteButton = $('[data-action="mute-room"]');
  var cameraButton = $('[data-action="camera"]');
  var leaveStageButton = $('[data-action="leave-stage"]');

  // uplink video: sent size, rate and frame rate off stage (thumbnail) and on stage
  var UPLINK_THUMB = { maxBitrate: 150000, scaleResolutionDownBy: 2, maxFramerate: 15 };
  var UPLINK_STAGE = { maxBitrate: 300000, scaleResolutionDownBy: 1, maxFramerate: 20 };
  var UPLINK_CONSTRAINTS = {
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 20, max: 30 } }
  };

  var STALL_START_MS = 6000;
  var STALL_MAX_MS = 30000;

  var st = {
    token: C.readToken(),
    lesson: C.lessonFromPath(),
    fatal: null, // {title, detail}
    welcomed: false,
    lost: false,
    peerId: null,
    role: null,
    lessonState: null,
    lessonTitle: "",
    iceServers: [],
    publisher: null, // null = not told yet
    hand: false,
    media: null,
    stream: null,
    mediaAttempt: 0,
    mediaRetry: null,
    mediaTrouble: false,
    tier: null,
    lowBandwidth: false,
    autoplayBlocked: false,
    sessionFrames: 0,
    lastFrameAt: 0,
    flowing: false,
    stallLimit: STALL_START_MS,
    notice: "",
    noticeTimer: null,
    recording: "off",
    consentNeeded: false,
    // two-way lesson
    layout: "full", // subscribe offer: "full" (3 video + 2 audio m-lines) or "basic" (1 + 1)
    rx: null, // the subscribe session's transceivers by role (cam, share, stage, audio, stageAudio)
    shareStream: null,
    stageStream: null,
    roleBase: { stageFrames: 0, stageAudio: 0, shareFrames: 0 },
    roleLive: { stageFrames: 0, stageAudio: 0, shareFrames: 0 },
    stage: null, // {peer_id, name, school} of the classroom on stage, or null
    stageChangedAt: null, // Date.now() when this page last learned of a stage change
    share: false, // the teacher shares a screen
    mutedByTeacher: false,
    removed: false,
    local: { audio: true, video: true }, // the local teacher's mute-room / camera
    camera: { stream: null, pending: false, error: null }
  };
  // The uplink connection, on the same fields C.stopMedia / C.retryMedia use.
  var up = {
    media: null,
    mediaRetry: null,
    mediaAttempt: 0,
    mediaTrouble: false,
    connected: false,
    disabled: null, // an error code after which this session does not offer again
    videoSender: null,
    audioSender: null,
    big: false, // the size last applied: full (on stage) or thumbnail
    shrinkTimer: null,
    framesEncoded: 0
  };
  var stats = new C.StatsTotals();
  var ledger = new C.OfferLedger();
  var signal = null;

  function onStage() {
    return !!(st.stage && st.peerId && st.stage.peer_id === st.peerId);
  }

  /* ------------------------------------------------------------ rendering */

  function render() {
    var kind;
    var main;
    var detail = "";
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
      if (st.mediaTrouble) {
        detail = t("media_reconnecting");
      } else if (!st.flowing) {
        detail = st.publisher === false ? t("no_teacher_video") : t("media_connecting");
      }
    } else {
      kind = "waiting";
      main = t("waiting");
    }
    if (!detail && st.notice) {
      detail = st.notice;
    }
    statusEl.textContent = main;
    statusEl.setAttribute("data-state", kind);
    detailEl.textContent = detail;
    detailEl.hidden = !detail;
    var showJoin = st.autoplayBlocked && !st.fatal && st.welcomed && st.lessonState !== "ended";
    joinButton.hidden = !showJoin;
    joinHint.hidden = !showJoin;
    // With the picture playing, the status shrinks to a corner badge.
    var compact = kind === "live" && st.flowing && !showJoin && !detail;
    overlay.classList.toggle("compact", compact);
    overlay.setAttribute("data-kind", kind);
    document.body.setAttribute("data-kind", kind);

    var canHand = st.welcomed && st.role === "classroom" && st.lessonState !== "ended";
    raiseButton.hidden = st.hand || st.role !== "classroom";
    lowerButton.hidden = !st.hand || st.role !== "classroom";
    raiseButton.disabled = !canHand;
    lowerButton.disabled = !canHand;
    handNote.hidden = !(st.hand && canHand);
    var lowButton = $('[data-action="low-bandwidth"]');
    lowButton.hidden = st.role !== "classroom";
    lowButton.disabled = !canHand;
    lowButton.setAttribute("aria-pressed", st.lowBandwidth ? "true" : "false");
    $("#low-bw-text").textContent = t(st.lowBandwidth ? "low_bandwidth_on" : "low_bandwidth");
    $("#audio-only").hidden = !(kind === "live" && st.tier === "audio");
    $("#lesson-name").textContent = st.lessonTitle || st.lesson;
    var recOn = st.welcomed && st.lessonState !== "ended" && st.recording !== "off";
    $("#rec").hidden = !recOn;
    $("#rec").setAttribute("data-state", st.recording);
    $("#rec-text").textContent = t(st.recording === "paused" ? "recording_paused" : "recording_on");
    $("#consent").hidden = !(st.welcomed && st.consentNeeded && st.role === "classroom" &&
                             st.lessonState !== "ended");
    renderTwoWay(kind, canHand);
  }

  function renderTwoWay(kind, canAct) {
    var live = kind === "live";
    var full = st.layout === "full";
    var shareOn = live && full && st.share;
    var stageKind = "none";
    if (live && full && st.stage) {
      stageKind = onStage() ? "self" : "other";
    }
    document.body.setAttribute("data-share", shareOn ? "on" : "off");
    document.body.setAttribute("data-stage", stageKind);
    shareVideo.hidden = !shareOn;
    $("#stage-box").hidden = stageKind !== "other";
    $("#stage-name").textContent = st.stage
      ? t("stage_label", { name: [st.stage.school, st.stage.name].filter(Boolean).join(" · ") })
      : "";
    var selfShown = stageKind === "self" && !!st.camera.stream;
    $("#self-box").hidden = !selfShown;
    if (selfShown && selfView.srcObject !== st.camera.stream) {
      selfView.srcObject = st.camera.stream;
      selfView.play().catch(function () {});
    }
    $("#on-stage").hidden = stageKind !== "self";
    leaveStageButton.disabled = !canAct;
    $("#teacher-muted").hidden = !(st.mutedByTeacher && st.welcomed && !st.fatal);

    var isRoom = st.role === "classroom";
    var stream = st.camera.stream;
    var hasAudio = !!(stream && stream.getAudioTracks().length);
    var hasVideo = !!(stream && stream.getVideoTracks().length);
    muteButton.hidden = !isRoom || !hasAudio;
    cameraButton.hidden = !isRoom || !hasVideo;
    muteButton.disabled = !canAct;
    cameraButton.disabled = !canAct;
    muteButton.setAttribute("aria-pressed", st.local.audio ? "false" : "true");
    cameraButton.setAttribute("aria-pressed", st.local.video ? "false" : "true");
    $("#mute-room-text").textContent = t(st.local.audio ? "mute_room" : "unmute_room");
    $("#camera-text").textContent = t(st.local.video ? "camera_off" : "camera_on");

    var note = $("#uplink-note");
    var upState = uplinkState();
    var text = "";
    if (isRoom && st.welcomed && st.lessonState !== "ended") {
      if (st.camera.error && !stream) {
        text = t(st.camera.error === "insecure" ? "uplink_insecure"
          : st.camera.error === "NotAllowedError" ? "uplink_denied" : "uplink_none");
      } else if (up.connected) {
        text = t("uplink_ok");
      } else if (up.mediaTrouble) {
        text = t("uplink_retry");
      } else if (up.media) {
        text = t("uplink_connecting");
      }
    }
    note.textContent = text;
    note.hidden = !text;
    note.setAttribute("data-state", upState);
  }

  function uplinkState() {
    if (up.media && up.media.pc) {
      return up.media.pc.connectionState;
    }
    if (up.disabled) {
      return "refused";
    }
    if (st.camera.error && !st.camera.stream) {
      return "unavailable";
    }
    return up.mediaTrouble ? "retrying" : "new";
  }

  function setRecording(rec) {
    if (rec && typeof rec.state === "string") {
      st.recording = rec.state;
    }
    if (rec && Array.isArray(rec.consent_schools) && st.school &&
        rec.consent_schools.indexOf(st.school) >= 0) {
      st.consentNeeded = false; // acknowledged for this school (maybe by another room)
    }
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
    stopMedia();
    closeCamera();
    if (signal) {
      signal.stop();
    }
    st.welcomed = false;
    render();
  }

  /* ------------------------------------------------------------ playback */

  /**
   * Start playback. With sound first; if the browser refuses (autoplay policy), play muted so
   * the picture is there, and show the join button for the sound. Once refused, the page does
   * not try to unmute by itself again (Chrome pauses an element whose unmuting it refuses).
   */
  // Elements that play sound: the teacher (camera + voice) and the classroom on stage.
  var soundPlayers = [video, stageVideo];

  function tryPlay() {
    soundPlayers.forEach(tryPlayEl);
    if (shareVideo.srcObject && shareVideo.paused) {
      shareVideo.muted = true; // the share has no sound
      shareVideo.play().catch(function () {});
    }
  }

  function tryPlayEl(el) {
    if (!el.srcObject) {
      return;
    }
    if (st.autoplayBlocked) {
      el.muted = true;
      el.play().catch(function () {});
      return;
    }
    el.muted = false;
    var p = el.play();
    if (!p || !p.then) {
      return;
    }
    p.then(
      function () {
        render();
      },
      function (err) {
        if (err && err.name === "NotAllowedError") {
          st.autoplayBlocked = true;
          soundPlayers.forEach(function (other) {
            other.muted = true;
            if (other.srcObject) {
              other.play().catch(function () {});
            }
          });
          render();
        }
        // AbortError (a new source or a pause came first): the watchdog tries again
      }
    );
  }

  /** Once a second: a picture that should play but is paused gets another play(). */
  function keepPlaying() {
    if (!st.media) {
      return;
    }
    if ((video.srcObject && video.paused) || (stageVideo.srcObject && stageVideo.paused) ||
        (shareVideo.srcObject && shareVideo.paused)) {
      tryPlay();
    }
  }

  joinButton.addEventListener("click", function () {
    st.autoplayBlocked = false;
    soundPlayers.forEach(function (el) {
      if (!el.srcObject) {
        return;
      }
      el.muted = false;
      el.play().then(
        function () {
          render();
        },
        function (err) {
          if (err && err.name === "NotAllowedError") {
            st.autoplayBlocked = true; // still blocked: the button stays
            el.muted = true;
            el.play().catch(function () {});
          }
          render();
        }
      );
    });
  });

  video.addEventListener("dblclick", function () {
    if (document.fullscreenElement) {
      document.exitFullscreen().catch(function () {});
    } else if (document.documentElement.requestFullscreen) {
      document.documentElement.requestFullscreen().catch(function () {});
    }
  });

  /* ------------------------------------------------------------ media */

  function startMedia() {
    if (st.media || st.fatal || !st.welcomed || st.lessonState === "ended") {
      return;
    }
    if (st.mediaRetry) {
      clearTimeout(st.mediaRetry);
      st.mediaRetry = null;
    }
    var stream = new MediaStream();
    var shareStream = new MediaStream();
    var stageStream = new MediaStream();
    var rx = {};
    var layout = st.layout;
    var session = new C.MediaSession({
      purpose: "subscribe",
      signal: signal,
      iceServers: st.iceServers,
      stats: stats,
      setup: function (pc) {
        var recv = { direction: "recvonly" };
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
        for (var role in rx) {
          var kind = rx[role].receiver.track.kind;
          C.preferCodec(rx[role], kind, kind === "video" ? "VP8" : "opus", true);
        }
      },
      onOfferSent: function () {
        ledger.sent("subscribe");
      },
      onTurnRefused: function () {
        notice(t("turn_refused"));
      },
      onTrack: function (event) {
        if (session !== st.media) {
          return;
        }
        var tr = event.transceiver;
        var target = stream;
        var el = video;
        if (tr && (tr === rx.share)) {
          target = shareStream;
          el = shareVideo;
        } else if (tr && (tr === rx.stage || tr === rx.stageAudio)) {
          target = stageStream;
          el = stageVideo;
        }
        target.addTrack(event.track);
        if (el.srcObject !== target) {
          el.srcObject = target; // tracks added later join this stream in place
          tryPlay();
        }
      },
      onConnected: function () {
        if (session === st.media) {
          st.mediaTrouble = false;
          render();
        }
      },
      onStateChange: function () {
        render();
      },
      onFail: function (reason) {
        if (session === st.media) {
          mediaFailed(reason);
        }
      }
    });
    st.media = session;
    st.stream = stream;
    st.rx = rx;
    st.shareStream = shareStream;
    st.stageStream = stageStream;
    st.sessionFrames = 0;
    st.lastFrameAt = Date.now();
    session.start();
    render();
  }

  function stopMedia() {
    C.stopMedia(st);
    st.flowing = false;
    st.rx = null;
    foldRoleStats();
  }

  /* ------------------------------------------------------------ per-role stats */

  function foldRoleStats() {
    for (var key in st.roleLive) {
      st.roleBase[key] += st.roleLive[key];
      st.roleLive[key] = 0;
    }
  }

  /** The stage and share receivers' own counters (this session's, never backwards). */
  function pollRoles() {
    var rx = st.rx;
    if (!rx || !rx.stage) {
      return Promise.resolve();
    }
    return Promise.all([
      C.rtpCounts(rx.stage.receiver),
      C.rtpCounts(rx.stageAudio.receiver),
      C.rtpCounts(rx.share.receiver)
    ]).then(function (r) {
      if (rx !== st.rx) {
        return;
      }
      var live = st.roleLive;
      live.stageFrames = Math.max(live.stageFrames, r[0].framesDecoded);
      live.stageAudio = Math.max(live.stageAudio, r[1].bytesReceived);
      live.shareFrames = Math.max(live.shareFrames, r[2].framesDecoded);
    });
  }

  /* ------------------------------------------------------------ uplink (camera + mic) */

  function gum(constraints) {
    return navigator.mediaDevices.getUserMedia(constraints);
  }

  /** Open the camera and microphone once; a TV without them still follows the lesson. */
  function openCamera() {
    if (st.camera.stream || st.camera.pending || st.role !== "classroom" || st.fatal) {
      return;
    }
    if (!C.secureContext() || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      st.camera.error = C.secureContext() ? "getUserMedia" : "insecure"; // still receives
      render();
      return;
    }
    st.camera.pending = true;
    var both = UPLINK_CONSTRAINTS;
    gum(both)
      .catch(function () {
        return gum({ audio: both.audio }); // no camera: the room is still heard
      })
      .catch(function () {
        return gum({ video: both.video }); // no microphone: still seen
      })
      .then(
        function (stream) {
          st.camera.pending = false;
          st.camera.error = null;
          if (st.fatal || st.lessonState === "ended") {
            stopTracks(stream);
            render();
            return;
          }
          st.camera.stream = stream;
          applyLocalEnabled();
          startUplink();
          render();
        },
        function (err) {
          st.camera.pending = false;
          st.camera.error = (err && (err.name || err.message)) || "error";
          render();
        }
      );
  }

  function stopTracks(stream) {
    if (stream) {
      stream.getTracks().forEach(function (track) {
        track.stop();
      });
    }
  }

  function closeCamera() {
    stopUplink();
    stopTracks(st.camera.stream);
    st.camera.stream = null;
    selfView.srcObject = null;
  }

  function applyLocalEnabled() {
    var stream = st.camera.stream;
    if (!stream) {
      return;
    }
    stream.getAudioTracks().forEach(function (track) {
      track.enabled = st.local.audio;
    });
    stream.getVideoTracks().forEach(function (track) {
      track.enabled = st.local.video;
    });
  }

  /**
   * Full size on stage only. (Sending full size already while the hand is up did not make
   * the stage start sooner in the browser test: 0.3-1.4 s vs 0.2-0.75 s from the stage event
   * to the first decoded frame, on a loaded machine.)
   */
  function uplinkBig() {
    return onStage();
  }

  function uplinkEncoding() {
    var e = uplinkBig() ? UPLINK_STAGE : UPLINK_THUMB;
    return {
      maxBitrate: e.maxBitrate,
      scaleResolutionDownBy: e.scaleResolutionDownBy,
      maxFramerate: e.maxFramerate
    };
  }

  /** Thumbnail size off stage, full size on stage (no renegotiation: setParameters). */
  function applyUplinkEncoding() {
    var sender = up.videoSender;
    if (!sender || !sender.getParameters || !sender.setParameters || !up.media) {
      return;
    }
    up.big = uplinkBig();
    try {
      var params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) {
        return;
      }
      var want = uplinkEncoding();
      var enc = params.encodings[0];
      enc.maxBitrate = want.maxBitrate;
      enc.scaleResolutionDownBy = want.scaleResolutionDownBy;
      enc.maxFramerate = want.maxFramerate;
      sender.setParameters(params).catch(function (err) {
        if (window.console) {
          console.info("classroom: uplink setParameters " + (err && err.name));
        }
      });
    } catch (e) {
      /* an old browser: its default rate */
    }
  }

  function startUplink() {
    var stream = st.camera.stream;
    if (up.media || up.disabled || !stream || st.fatal || !st.welcomed ||
        st.role !== "classroom" || st.lessonState === "ended") {
      return;
    }
    if (up.mediaRetry) {
      clearTimeout(up.mediaRetry);
      up.mediaRetry = null;
    }
    var session = new C.MediaSession({
      purpose: "uplink",
      signal: signal,
      iceServers: st.iceServers,
      setup: function (pc) {
        var vtrack = stream.getVideoTracks()[0];
        var atrack = stream.getAudioTracks()[0];
        if (vtrack) {
          var vt;
          try {
            vt = pc.addTransceiver(vtrack, {
              direction: "sendonly",
              streams: [stream],
              sendEncodings: [uplinkEncoding()]
            });
          } catch (e) {
            vt = pc.addTransceiver(vtrack, { direction: "sendonly", streams: [stream] });
          }
          C.preferCodec(vt, "video", "VP8");
          up.videoSender = vt.sender;
        }
        if (atrack) {
          var at = pc.addTransceiver(atrack, { direction: "sendonly", streams: [stream] });
          C.preferCodec(at, "audio", "opus");
          up.audioSender = at.sender;
        }
      },
      onOfferSent: function () {
        ledger.sent("uplink");
      },
      onConnected: function () {
        if (session === up.media) {
          up.connected = true;
          up.mediaTrouble = false;
          up.mediaAttempt = 0;
          applyUplinkEncoding();
          render();
        }
      },
      onStateChange: function () {
        render();
      },
      onFail: function (reason) {
        if (session === up.media) {
          uplinkFailed(reason);
        }
      }
    });
    up.media = session;
    up.connected = false;
    session.start();
    render();
  }

  function stopUplink() {
    C.stopMedia(up);
    up.connected = false;
    up.videoSender = null;
    up.audioSender = null;
  }

  function uplinkFailed(reason) {
    stopUplink();
    if (st.fatal || !st.welcomed || st.lessonState === "ended" || up.disabled) {
      render();
      return;
    }
    C.retryMedia(up, startUplink, "classroom: uplink", reason);
    render();
  }

  // Refusals after which offering again cannot help in this session.
  var UPLINK_FINAL = {
    bad_message: true, // an older server without the uplink purpose
    forbidden: true,
    too_many_tracks: true,
    bad_sdp: true
  };

  function uplinkRefused(code) {
    if (code === "lesson_ended" || code === "lesson_not_live") {
      stopUplink(); // the lesson message that (re)opens the lesson starts it again
      up.mediaTrouble = false;
      return;
    }
    if (UPLINK_FINAL[code]) {
      up.disabled = code;
      stopUplink();
      if (window.console) {
        console.info("classroom: uplink refused (" + code + "), not offered again");
      }
      return;
    }
    uplinkFailed(code);
  }

  function sendUplinkState() {
    if (signal && st.role === "classroom") {
      signal.send({ type: "uplink-state", audio: st.local.audio, video: st.local.video });
    }
  }

  function pollUplink() {
    if (!up.videoSender) {
      return Promise.resolve();
    }
    return C.rtpCounts(up.videoSender).then(function (c) {
      up.framesEncoded = Math.max(up.framesEncoded, c.framesEncoded);
    });
  }

  function mediaFailed(reason) {
    stopMedia();
    if (st.fatal || !st.welcomed || st.lessonState === "ended") {
      render();
      return;
    }
    C.retryMedia(st, startMedia, "classroom: media", reason);
    render();
  }

  /** Once a second: stats for the totals, and the "no frames while live" watchdog. */
  function watch() {
    pollRoles();
    var session = st.media;
    if (!session || !session.pc) {
      return;
    }
    stats.poll(session.pc).then(function (counts) {
      if (!counts || session !== st.media) {
        return;
      }
      var now = Date.now();
      var wasFlowing = st.flowing;
      if (counts.framesDecoded > st.sessionFrames) {
        st.sessionFrames = counts.framesDecoded;
        st.lastFrameAt = now;
        st.flowing = true;
        st.mediaTrouble = false;
        st.mediaAttempt = 0;
        st.stallLimit = STALL_START_MS;
      } else {
        if (now - st.lastFrameAt > 2500) {
          st.flowing = false;
        }
        // on the audio-only tier no frames come by design: not a stall
        var expectVideo = st.lessonState === "live" && st.publisher !== false &&
          st.tier !== "audio";
        if (expectVideo && session.connected && now - st.lastFrameAt > st.stallLimit) {
          st.stallLimit = Math.min(STALL_MAX_MS, st.stallLimit * 2);
          mediaFailed("no_frames");
          return;
        }
      }
      if (wasFlowing !== st.flowing) {
        render();
        if (st.flowing && session.turnRefused) {
          notice(t("turn_refused")); // the picture came another way: say the relay refused
        }
      }
    });
  }

  /* ------------------------------------------------------------ messages */

  function onWelcome(msg) {
    st.welcomed = true;
    st.peerId = msg.peer_id;
    st.role = msg.role;
    st.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
    st.hand = false;
    st.publisher = msg.media && typeof msg.media.publisher === "boolean" ? msg.media.publisher : null;
    st.mediaAttempt = 0;
    st.mediaTrouble = false;
    st.stallLimit = STALL_START_MS;
    st.tier = null; // a new session starts on the top tier ...
    ledger.clear();
    up.disabled = null;
    up.mediaAttempt = 0;
    st.stage = msg.stage && msg.stage.peer_id ? msg.stage : null;
    st.share = !!(msg.share && (msg.share === true || msg.share.on));
    st.mutedByTeacher = false;
    if (st.lowBandwidth && msg.role === "classroom") {
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
    setLesson(msg.lesson_state || (msg.lesson_info && msg.lesson_info.state), msg.lesson_info);
    startMedia();
    if (msg.role === "classroom" && st.lessonState !== "ended") {
      if (!st.local.audio || !st.local.video) {
        sendUplinkState(); // the new session starts "on": say what the local teacher turned off
      }
      openCamera();
      startUplink();
    }
    render();
  }

  function setLesson(state, info) {
    var previous = st.lessonState;
    if (state === "waiting" || state === "live" || state === "ended") {
      st.lessonState = state;
    }
    if (info && info.title) {
      st.lessonTitle = String(info.title);
    }
    if (st.lessonState === "ended") {
      stopMedia();
      st.mediaTrouble = false;
      st.hand = false;
      st.stage = null;
      st.share = false;
      video.srcObject = null;
      shareVideo.srcObject = null;
      stageVideo.srcObject = null;
      closeCamera(); // the camera light goes off with the lesson
    } else if (previous !== st.lessonState) {
      st.lastFrameAt = Date.now();
      st.stallLimit = STALL_START_MS;
      st.mediaAttempt = 0;
      startMedia();
      if (st.welcomed && st.role === "classroom") {
        up.mediaAttempt = 0;
        openCamera();
        startUplink();
      }
    }
  }

  function syncHand(roster) {
    var peers = roster && Array.isArray(roster.peers) ? roster.peers : roster;
    if (!Array.isArray(peers)) {
      return;
    }
    for (var i = 0; i < peers.length; i++) {
      if (peers[i] && peers[i].peer_id === st.peerId) {
        st.hand = !!peers[i].hand;
      }
    }
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
        syncHand(msg.peers);
        break;
      case "hand":
        if (msg.peer_id === st.peerId) {
          st.hand = !!msg.raised;
        }
        break;
      case "media":
        st.publisher = !!msg.publisher;
        if (st.publisher) {
          st.lastFrameAt = Date.now();
          st.stallLimit = STALL_START_MS;
          startMedia();
        }
        break;
      case "answer":
        ledger.answered(msg.purpose);
        if (msg.purpose === "subscribe" && st.media) {
          st.media.handleAnswer(msg.sdp);
        } else if (msg.purpose === "uplink" && up.media) {
          up.media.handleAnswer(msg.sdp);
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
        closeCamera();
        setFatal("removed", "removed_detail");
        return;
      case "recording":
        setRecording(msg);
        break;
      case "tier":
        if (typeof msg.tier === "string" && (!msg.peer_id || msg.peer_id === st.peerId)) {
          st.tier = msg.tier;
          st.lastFrameAt = Date.now(); // video pauses on "audio" and resumes after it
        }
        break;
      case "error":
        onError(msg);
        break;
      default:
        break;
    }
    resizeUplink();
    render();
  }

  /**
   * Stage changed: grow the uplink at once, shrink it only if it still should after 1.5 s
   * (a classroom called again right after leaving keeps its size).
   */
  function resizeUplink() {
    if (!up.connected || up.big === uplinkBig()) {
      return;
    }
    if (uplinkBig()) {
      applyUplinkEncoding();
      return;
    }
    if (!up.shrinkTimer) {
      up.shrinkTimer = setTimeout(function () {
        up.shrinkTimer = null;
        if (up.connected && up.big && !uplinkBig()) {
          applyUplinkEncoding();
        }
      }, 1500);
    }
  }

  function onError(msg) {
    var code = msg.code || "internal";
    if (code === "unknown_type" && C.TWO_WAY_TYPES[msg.ref]) {
      if (window.console) {
        console.info("classroom: the server does not know " + msg.ref);
      }
      return;
    }
    var purpose = null;
    if (msg.ref === "offer") {
      purpose = ledger.refused(msg) || "subscribe";
    } else if (msg.ref === "ice") {
      purpose = msg.purpose || null;
      if (!purpose) {
        return; // a late candidate of a refused connection: nothing to retry
      }
    } else if (code === "bad_sdp" || code === "media_failed") {
      purpose = msg.purpose || "subscribe";
    }
    if (purpose === "uplink") {
      uplinkRefused(code);
      if (code === "too_many_tracks" || code === "forbidden") {
        notice(C.errorText(code));
      } else {
        render();
      }
      return;
    }
    if (code === "uplink_over_cap") {
      notice(C.errorText(code));
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
          st.mediaRetry = setTimeout(function () {
            st.mediaRetry = null;
            startMedia();
          }, 5000);
        }
      } else if (st.media) {
        mediaFailed(code);
      }
    }
    if (code === "lesson_ended" && msg.ref === "offer") {
      return; // the lesson message says it in plain words
    }
    notice(C.errorText(code));
  }

  /* ------------------------------------------------------------ stats hook */

  window.classroomStats = function () {
    var session = st.media;
    var pc = session && session.pc;
    var ready = Promise.all([pc ? stats.poll(pc) : null, pollRoles(), pollUplink()]);
    return ready.then(function () {
      var totals = stats.totals();
      var hasVideo = !!(st.stream && st.stream.getVideoTracks().length && st.media);
      var roles = {};
      for (var key in st.roleBase) {
        roles[key] = st.roleBase[key] + st.roleLive[key];
      }
      return {
        connectionState: pc ? pc.connectionState : "new",
        framesDecoded: totals.framesDecoded,
        audioBytesReceived: totals.audioBytesReceived,
        videoTier: hasVideo ? st.tier || "high" : null,
        lessonState: st.lessonState || "waiting",
        // two-way lesson
        stageFramesDecoded: roles.stageFrames,
        stageAudioBytesReceived: roles.stageAudio,
        shareFramesDecoded: roles.shareFrames,
        uplinkState: uplinkState(),
        uplinkFramesEncoded: up.framesEncoded,
        uplinkAudio: st.local.audio,
        uplinkVideo: st.local.video,
        onStage: onStage(),
        stageChangedAt: st.stageChangedAt,
        mutedByTeacher: st.mutedByTeacher,
        subscribeLayout: st.layout,
        // TURN (issue 12): the subscribe connection's selected ICE pair, and a refusal
        candidate: stats.candidate(pc),
        turnRefused: !!(session && session.turnRefused)
      };
    });
  };

  /* ------------------------------------------------------------ start */

  raiseButton.addEventListener("click", function () {
    signal && signal.send({ type: "raise-hand" });
  });
  lowerButton.addEventListener("click", function () {
    signal && signal.send({ type: "lower-hand" });
  });
  $('[data-action="low-bandwidth"]').addEventListener("click", function () {
    if (signal) {
      st.lowBandwidth = !st.lowBandwidth;
      signal.send({ type: "low-bandwidth", on: st.lowBandwidth });
      render();
    }
  });
  muteButton.addEventListener("click", function () {
    st.local.audio = !st.local.audio;
    applyLocalEnabled();
    sendUplinkState();
    render();
  });
  cameraButton.addEventListener("click", function () {
    st.local.video = !st.local.video;
    applyLocalEnabled();
    sendUplinkState();
    render();
  });
  leaveStageButton.addEventListener("click", function () {
    signal && signal.send({ type: "leave-stage" });
  });
  $("[data-action=recording-consent]").addEventListener("click", function () {
    if (signal) {
      signal.send({ type: "recording-consent" });
      st.consentNeeded = false; // the local teacher has acknowledged; the server keeps the record
      render();
    }
  });

  function keepScreenOn() {
    if (navigator.wakeLock && document.visibilityState === "visible") {
      navigator.wakeLock.request("screen").catch(function () {});
    }
  }
  document.addEventListener("visibilitychange", keepScreenOn);

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
      stopMedia();
      stopUplink();
      st.mediaTrouble = false;
      up.mediaTrouble = false;
      render();
    },
    onFatal: function (code) {
      if (code === "removed") {
        st.removed = true;
        setFatal("removed", "removed_detail");
        return;
      }
      setFatal("invalid_link", "invalid_link_detail");
    }
  });
  signal.connect();
  setInterval(function () {
    watch();
    keepPlaying();
  }, 1000);
  keepScreenOn();
  render();
})();
