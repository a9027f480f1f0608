/* Teacher console: /teach/{lesson}#token=...
 *
 * Camera and microphone preview, publishing to the relay over WebRTC (offer with
 * purpose "publish"), start / end the lesson, and the roster of remote classrooms with
 * their media connection state and raised hands. Reconnects the socket and the publish
 * connection by itself like the classroom view does.
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
    noticeTimer: null
  };
  var stats = new C.StatsTotals();
  var signal = null;

  /* ------------------------------------------------------------ rendering */

  function statusText() {
    if (st.fatal) {
      return t(st.fatal.title) + (C.lang === "en" ? ". " : "。") + t(st.fatal.detail);
    }
    if (!st.welcomed) {
      return t(st.lost ? "reconnecting" : "connecting");
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
    endButton.disabled = !st.welcomed || state !== "live";

    var media = [];
    if (st.media && st.media.pc) {
      media.push(t(st.mediaConnected ? "publish_ok" : "publish_connecting"));
    }
    if (st.publisher) {
      media.push(t("publisher_on"));
    }
    mediaStatusEl.textContent = media.join(" · ");
    renderRoster();
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
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      st.cameraPending = false;
      st.cameraError = "getUserMedia";
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
    var session = new C.MediaSession({
      purpose: "publish",
      signal: signal,
      iceServers: st.iceServers,
      stats: stats,
      setup: function (pc) {
        stream.getTracks().forEach(function (track) {
          pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
        });
      },
      onConnected: function () {
        if (session === st.media) {
          st.mediaConnected = true;
          st.mediaTrouble = false;
          st.mediaAttempt = 0;
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
      st.mediaTrouble = false;
      st.publisher = false;
    } else if (previous !== st.lessonState) {
      st.mediaAttempt = 0;
      startPublish();
    }
  }

  function setRoster(peers) {
    if (Array.isArray(peers)) {
      st.peers = peers.slice();
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
    var roster = msg.roster;
    setRoster(roster && !Array.isArray(roster) ? roster.peers : roster);
    setLesson(msg.lesson_state || (msg.lesson_info && msg.lesson_info.state), msg.lesson_info);
    startPublish();
    render();
  }

  function onMessage(msg) {
    switch (msg.type) {
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
        if (msg.purpose === "publish" && st.media) {
          st.media.handleAnswer(msg.sdp);
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
    if (mediaRelated && st.media) {
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
    var ready = pc ? stats.poll(pc) : Promise.resolve(null);
    return ready.then(function () {
      var totals = stats.totals();
      return {
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

  startButton.addEventListener("click", function () {
    signal && signal.send({ type: "start-lesson" });
  });
  endButton.addEventListener("click", function () {
    signal && signal.send({ type: "end-lesson" });
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
  }, 2000);
  render();
})();
