/* Classroom view (TV mode): /class/{lesson}#token=...
 *
 * Joins from one link and then never needs a click: hello -> welcome -> subscribe (recvonly
 * video + audio), the teacher full screen, status in plain words. Reconnects by itself:
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
    consentNeeded: false
  };
  var stats = new C.StatsTotals();
  var signal = null;

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
  }

  function setRecording(rec) {
    if (rec && typeof rec.state === "string") {
      st.recording = rec.state;
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
  function tryPlay() {
    if (!video.srcObject) {
      return;
    }
    if (st.autoplayBlocked) {
      video.muted = true;
      video.play().catch(function () {});
      return;
    }
    video.muted = false;
    var p = video.play();
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
          video.muted = true;
          video.play().catch(function () {});
          render();
        }
        // AbortError (a new source or a pause came first): the watchdog tries again
      }
    );
  }

  /** Once a second: a picture that should play but is paused gets another play(). */
  function keepPlaying() {
    if (video.srcObject && video.paused && st.media) {
      tryPlay();
    }
  }

  joinButton.addEventListener("click", function () {
    st.autoplayBlocked = false;
    video.muted = false;
    video.play().then(
      function () {
        render();
      },
      function (err) {
        if (err && err.name === "NotAllowedError") {
          st.autoplayBlocked = true; // still blocked: the button stays
          video.muted = true;
          video.play().catch(function () {});
        }
        render();
      }
    );
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
    var session = new C.MediaSession({
      purpose: "subscribe",
      signal: signal,
      iceServers: st.iceServers,
      stats: stats,
      setup: function (pc) {
        pc.addTransceiver("video", { direction: "recvonly" });
        pc.addTransceiver("audio", { direction: "recvonly" });
      },
      onTrack: function (event) {
        if (session !== st.media) {
          return;
        }
        stream.addTrack(event.track);
        if (video.srcObject !== stream) {
          video.srcObject = stream; // tracks added later join this stream in place
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
    st.sessionFrames = 0;
    st.lastFrameAt = Date.now();
    session.start();
    render();
  }

  function stopMedia() {
    C.stopMedia(st);
    st.flowing = false;
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
    if (st.lowBandwidth && msg.role === "classroom") {
      signal.send({ type: "low-bandwidth", on: true }); // ... unless the button is on
    }
    $("#room-name").textContent = [msg.school, msg.name].filter(Boolean).join(" · ");
    if (msg.role !== "classroom" && msg.role !== "teacher") {
      setFatal("wrong_page", "wrong_page_detail");
      return;
    }
    syncHand(msg.roster);
    setRecording(msg.recording);
    st.consentNeeded = !!msg.recording_consent_required;
    setLesson(msg.lesson_state || (msg.lesson_info && msg.lesson_info.state), msg.lesson_info);
    startMedia();
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
      video.srcObject = null;
    } else if (previous !== st.lessonState) {
      st.lastFrameAt = Date.now();
      st.stallLimit = STALL_START_MS;
      st.mediaAttempt = 0;
      startMedia();
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
        if (msg.purpose === "subscribe" && st.media) {
          st.media.handleAnswer(msg.sdp);
        }
        break;
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
    render();
  }

  function onError(msg) {
    var code = msg.code || "internal";
    var mediaRelated =
      msg.ref === "offer" || msg.ref === "ice" || code === "bad_sdp" || code === "media_failed";
    if (mediaRelated) {
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
    var ready = pc ? stats.poll(pc) : Promise.resolve(null);
    return ready.then(function () {
      var totals = stats.totals();
      var hasVideo = !!(st.stream && st.stream.getVideoTracks().length && st.media);
      return {
        connectionState: pc ? pc.connectionState : "new",
        framesDecoded: totals.framesDecoded,
        audioBytesReceived: totals.audioBytesReceived,
        videoTier: hasVideo ? st.tier || "high" : null,
        lessonState: st.lessonState || "waiting"
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
      st.mediaTrouble = false;
      render();
    },
    onFatal: function () {
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
