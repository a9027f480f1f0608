/* Shared classroom: code shared by the teacher console and the classroom view.
 *
 * A classic script (no modules, no build step, no outside assets). Everything hangs off
 * window.Classroom:
 *   strings / t() / applyI18n()  the zh-CN (default) and English texts, ?lang=en
 *   readToken() / lessonFromPath()  the token from the URL fragment, the lesson from the path
 *   Signal        the /ws socket: hello, keepalive, reconnect with backoff 0.5 s .. 5 s
 *   MediaSession  one RTCPeerConnection negotiated over the socket (offer/answer/ice)
 *   StatsTotals   getStats() totals that never go backwards across reconnects
 */
(function () {
  "use strict";

  var STRINGS = {
    zh: {
      recording_on: "录制中",
      recording_paused: "录制已暂停",
      consent_title: "本节课会被录制",
      consent_text: "录像将保存到共享课堂资源库，供本校学生回看。请本班老师向学生说明后确认。",
      consent_ok: "已告知学生，同意录制",
      low_bandwidth: "省流量",
      low_bandwidth_on: "省流量：开",
      audio_only: "网络较差，暂停画面，声音继续",
      connecting: "正在连接…",
      waiting: "等待老师开始上课",
      live: "上课中",
      reconnecting: "网络中断，正在重新连接…",
      ended: "本节课已结束",
      invalid_link: "链接无效或已过期",
      invalid_link_detail: "请向老师索取新的链接。",
      wrong_page: "这个链接不能用于此页面",
      wrong_page_detail: "请检查链接是否正确。",
      no_token: "链接不完整",
      no_token_detail: "链接里缺少登录信息，请复制完整的链接再打开。",
      media_connecting: "正在接收老师的画面…",
      media_reconnecting: "画面中断，正在重新连接…",
      turn_refused: "中继服务器（TURN）拒绝了登录凭据，已改用其他线路",
      no_teacher_video: "老师的画面还没有开始",
      no_webrtc: "这个浏览器不支持视频通话，请换用新版浏览器。",
      join: "点击开始播放",
      join_hint: "浏览器需要点一下才能播放声音",
      raise_hand: "举手",
      lower_hand: "放下手",
      hand_raised: "已举手，请等待老师点名",
      classroom_title: "同步课堂",
      lesson: "课程",
      // teacher console
      teacher_title: "主讲课堂控制台",
      start_lesson: "开始上课",
      end_lesson: "下课",
      lesson_state: "课堂状态",
      state_waiting: "未开始",
      state_live: "上课中",
      state_ended: "已结束",
      roster: "接收课堂",
      col_name: "课堂",
      col_school: "学校",
      col_media: "媒体连接",
      col_hand: "举手",
      col_link: "画质 / 网络",
      tier_high: "高清",
      tier_mid: "标清",
      tier_low: "流畅",
      tier_audio: "仅声音",
      loss: "丢包",
      no_classrooms: "还没有课堂加入",
      roster_summary: "{online} 个课堂在线，{connected} 个正在接收",
      hand_mark: "举手",
      preview: "本地预览",
      camera_opening: "正在打开摄像头和麦克风…",
      camera_failed: "无法打开摄像头或麦克风（{reason}）。请检查设备和浏览器权限后刷新页面。",
      // secure context (https): browsers give cameras only to https pages or this computer's own
      insecure_page: "需要通过 https 打开本页面才能使用摄像头和麦克风（现在打开的是 {origin}，浏览器只允许 https 网页或本机地址使用摄像头）。请使用服务器给出的 https 链接。",
      start_no_camera: "摄像头和麦克风没有打开：{reason}。现在开始上课，各课堂看不到也听不到您，您仍能看到和听到各课堂。",
      start_anyway: "仍然开始上课（只接收）",
      reason_insecure: "本页面不是通过 https 打开的，浏览器不允许使用摄像头",
      reason_pending: "还在等待浏览器的摄像头权限，请在浏览器的提示中点“允许”",
      reason_failed: "浏览器报告 {reason}，请检查设备和浏览器权限",
      publish_connecting: "正在连接媒体服务器…",
      publish_ok: "您的画面和声音正在发送到服务器",
      publish_retry: "媒体连接中断，正在重新连接…",
      publisher_on: "各课堂可以看到您的画面",
      ready_to_start: "准备就绪，可以开始上课",
      lesson_live_teacher: "正在上课，各课堂可以看到并听到您",
      lesson_ended_teacher: "本节课已结束，可以再次开始上课",
      media_none: "未连接",
      media_connecting_state: "连接中",
      media_connected: "已连接",
      media_disconnected: "中断",
      media_failed: "失败",
      media_closed: "已断开",
      media_active: "画面正常",
      media_inactive: "暂无画面",
      // two-way lesson (classroom page)
      mute_room: "本班静音",
      unmute_room: "取消静音",
      camera_off: "关闭摄像头",
      camera_on: "打开摄像头",
      muted_by_teacher: "主讲老师已将本班静音",
      removed: "本课堂已被主讲老师移出本节课",
      removed_detail: "如需重新加入，请刷新页面或联系主讲老师。",
      on_stage: "本班正在台上发言，所有课堂都能看到、听到你们",
      leave_stage: "结束发言",
      stage_label: "发言课堂：{name}",
      share_label: "老师的课件",
      uplink_connecting: "正在把本班画面发送给老师…",
      uplink_retry: "本班画面中断，正在重新连接…",
      uplink_ok: "老师能看到本班",
      uplink_none: "没有摄像头或麦克风，老师看不到本班",
      uplink_insecure: "摄像头未开启：需要通过 https 打开本页面，老师看不到本班。老师的画面和声音照常播放。",
      uplink_denied: "摄像头未开启：浏览器没有允许本页使用摄像头和麦克风，老师看不到本班。老师的画面和声音照常播放。",
      // two-way lesson (teacher console)
      share_screen: "共享屏幕 / 课件",
      stop_share: "停止共享",
      share_failed: "无法共享屏幕（{reason}）",
      sharing: "正在共享屏幕",
      grid: "课堂画面",
      grid_page: "第 {page} / {pages} 页",
      grid_prev: "上一页",
      grid_next: "下一页",
      hand_queue: "举手队列",
      no_hands: "暂无课堂举手",
      call_on_stage: "请上台",
      mute_classroom: "静音",
      unmute_classroom: "取消静音",
      remove_classroom: "移出",
      confirm_remove: "确认移出？",
      on_stage_badge: "台上",
      muted_badge: "已静音",
      cam_off_badge: "摄像头关",
      mic_off_badge: "本地静音",
      stage_now: "正在发言：{name}",
      stage_none: "没有课堂在台上",
      uplink_state_none: "无画面",
      grid_connecting: "正在连接课堂画面…",
      // errors
      err_rate_limited: "操作太频繁，请稍后再试",
      err_forbidden: "没有权限执行这个操作",
      err_lesson_ended: "本节课已结束",
      err_lesson_not_live: "课程还没有开始",
      err_lesson_not_found: "找不到这节课",
      err_media_failed: "媒体连接失败，正在重试…",
      err_bad_sdp: "媒体协商失败，正在重试…",
      err_store_unavailable: "服务器暂时不可用，正在重试…",
      err_internal: "服务器出错，正在重试…",
      err_not_found: "找不到这个课堂",
      err_too_many_tracks: "本班画面发送失败（轨道过多）",
      err_uplink_over_cap: "本班画面超出带宽上限，已暂停发送画面",
      err_other: "出错了（{code}）"
    },
    en: {
      recording_on: "Recording",
      recording_paused: "Recording paused",
      consent_title: "This lesson is recorded",
      consent_text: "The recording goes to the shared-classroom library for this school's students to replay. Tell the students, then confirm.",
      consent_ok: "Students told: I agree",
      low_bandwidth: "Low bandwidth",
      low_bandwidth_on: "Low bandwidth: on",
      audio_only: "Weak connection: picture paused, sound continues",
      connecting: "Connecting…",
      waiting: "Waiting for the teacher to start the lesson",
      live: "Lesson in progress",
      reconnecting: "Connection lost, reconnecting…",
      ended: "This lesson has ended",
      invalid_link: "This link is invalid or has expired",
      invalid_link_detail: "Please ask the teacher for a new link.",
      wrong_page: "This link cannot be used on this page",
      wrong_page_detail: "Please check that the link is correct.",
      no_token: "This link is incomplete",
      no_token_detail: "The sign-in part of the link is missing. Copy the whole link and open it again.",
      media_connecting: "Receiving the teacher's video…",
      media_reconnecting: "Video interrupted, reconnecting…",
      turn_refused: "The TURN relay refused its credentials; using another path",
      no_teacher_video: "The teacher's video has not started yet",
      no_webrtc: "This browser cannot play live video. Please use a recent browser.",
      join: "Tap to start",
      join_hint: "The browser needs a tap before it plays sound",
      raise_hand: "Raise hand",
      lower_hand: "Lower hand",
      hand_raised: "Hand raised, wait for the teacher",
      classroom_title: "Shared classroom",
      lesson: "Lesson",
      teacher_title: "Teacher console",
      start_lesson: "Start lesson",
      end_lesson: "End lesson",
      lesson_state: "Lesson",
      state_waiting: "not started",
      state_live: "live",
      state_ended: "ended",
      roster: "Remote classrooms",
      col_name: "Classroom",
      col_school: "School",
      col_media: "Media",
      col_hand: "Hand",
      col_link: "Quality / link",
      tier_high: "High",
      tier_mid: "Medium",
      tier_low: "Low",
      tier_audio: "Audio only",
      loss: "loss",
      no_classrooms: "No classroom has joined yet",
      roster_summary: "online: {online}, receiving: {connected}",
      hand_mark: "raised",
      preview: "Local preview",
      camera_opening: "Opening camera and microphone…",
      camera_failed: "Cannot open the camera or microphone ({reason}). Check the devices and the browser's permission, then reload.",
      insecure_page: "This page needs https to use the camera and microphone (it was opened as {origin}; browsers give cameras only to https pages or this computer's own address). Open the https link the server printed.",
      start_no_camera: "Your camera and microphone are not on: {reason}. If you start now the classrooms will neither see nor hear you; you will still see and hear them.",
      start_anyway: "Start anyway (receive only)",
      reason_insecure: "this page was not opened over https, so the browser gives it no camera",
      reason_pending: "still waiting for the browser's camera permission: press Allow in its prompt",
      reason_failed: "the browser reported {reason}; check the devices and the browser's permission",
      publish_connecting: "Connecting to the media server…",
      publish_ok: "Your video and sound are reaching the server",
      publish_retry: "Media connection lost, reconnecting…",
      publisher_on: "The classrooms can see you",
      ready_to_start: "Ready: you can start the lesson",
      lesson_live_teacher: "Lesson in progress: the classrooms see and hear you",
      lesson_ended_teacher: "The lesson has ended; you can start it again",
      media_none: "not connected",
      media_connecting_state: "connecting",
      media_connected: "connected",
      media_disconnected: "interrupted",
      media_failed: "failed",
      media_closed: "closed",
      media_active: "live",
      media_inactive: "no picture",
      mute_room: "Mute room",
      unmute_room: "Unmute room",
      camera_off: "Camera off",
      camera_on: "Camera on",
      muted_by_teacher: "The teacher has muted this classroom",
      removed: "The teacher removed this classroom from the lesson",
      removed_detail: "To join again, reload the page or ask the teacher.",
      on_stage: "You are on stage: every classroom sees and hears you",
      leave_stage: "Leave stage",
      stage_label: "On stage: {name}",
      share_label: "Teacher's slides",
      uplink_connecting: "Sending this classroom's picture to the teacher…",
      uplink_retry: "This classroom's picture was interrupted, reconnecting…",
      uplink_ok: "The teacher can see this classroom",
      uplink_none: "No camera or microphone: the teacher cannot see this classroom",
      uplink_insecure: "Camera off: this page needs https, so the teacher cannot see this classroom. The teacher's video and sound still play.",
      uplink_denied: "Camera off: the browser did not allow this page the camera and microphone, so the teacher cannot see this classroom. The teacher's video and sound still play.",
      share_screen: "Share screen / slides",
      stop_share: "Stop sharing",
      share_failed: "Cannot share the screen ({reason})",
      sharing: "Sharing the screen",
      grid: "Classrooms",
      grid_page: "page {page} / {pages}",
      grid_prev: "Previous",
      grid_next: "Next",
      hand_queue: "Raised hands",
      no_hands: "No raised hands",
      call_on_stage: "Call on stage",
      mute_classroom: "Mute",
      unmute_classroom: "Unmute",
      remove_classroom: "Remove",
      confirm_remove: "Remove?",
      on_stage_badge: "on stage",
      muted_badge: "muted",
      cam_off_badge: "camera off",
      mic_off_badge: "mic off",
      stage_now: "On stage: {name}",
      stage_none: "No classroom on stage",
      uplink_state_none: "no picture",
      grid_connecting: "Connecting the classroom pictures…",
      err_rate_limited: "Too many actions, please wait a moment",
      err_forbidden: "You are not allowed to do that",
      err_lesson_ended: "This lesson has ended",
      err_lesson_not_live: "The lesson has not started yet",
      err_lesson_not_found: "This lesson does not exist",
      err_media_failed: "Media connection failed, retrying…",
      err_bad_sdp: "Media negotiation failed, retrying…",
      err_store_unavailable: "The server is temporarily unavailable, retrying…",
      err_internal: "Server error, retrying…",
      err_not_found: "No such classroom",
      err_too_many_tracks: "This classroom's picture was refused (too many tracks)",
      err_uplink_over_cap: "This classroom sends over its bandwidth cap: picture paused",
      err_other: "Something went wrong ({code})"
    }
  };

  var params = new URLSearchParams(window.location.search);
  var lang = params.get("lang") === "en" ? "en" : "zh";

  function t(key, vars) {
    var table = STRINGS[lang];
    var text = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : STRINGS.zh[key];
    if (text === undefined) {
      text = key;
    }
    if (vars) {
      text = text.replace(/\{(\w+)\}/g, function (m, name) {
        return Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : m;
      });
    }
    return text;
  }

  /** Set <html lang> and fill every [data-i18n] element (textContent only, never HTML). */
  function applyI18n(root) {
    document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    var nodes = (root || document).querySelectorAll("[data-i18n]");
    for (var i = 0; i < nodes.length; i++) {
      nodes[i].textContent = t(nodes[i].getAttribute("data-i18n"));
    }
    var titled = document.querySelector("title[data-i18n]");
    if (titled) {
      document.title = titled.textContent;
    }
  }

  /** The token from the fragment (#token=...). The fragment stays, so a reload still works. */
  function readToken() {
    var hash = window.location.hash.replace(/^#/, "");
    if (!hash) {
      return "";
    }
    var value = new URLSearchParams(hash).get("token");
    return value ? value.trim() : "";
  }

  /** The lesson id: the last segment of /teach/{lesson} or /class/{lesson}. */
  function lessonFromPath() {
    var parts = window.location.pathname.split("/").filter(Boolean);
    try {
      return decodeURIComponent(parts[parts.length - 1] || "");
    } catch (e) {
      return parts[parts.length - 1] || "";
    }
  }

  function wsUrl() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/ws";
  }

  /** Codes after which retrying cannot help: the link itself is bad. */
  var FATAL_CODES = { invalid_token: true, token_expired: true, wrong_lesson: true };
  /** WebSocket close code after `removed {}` (docs/two-way.md). */
  var REMOVED_CLOSE_CODE = 4001;

  function errorText(code) {
    var key = "err_" + code;
    if (Object.prototype.hasOwnProperty.call(STRINGS.zh, key)) {
      return t(key);
    }
    if (FATAL_CODES[code]) {
      return t("invalid_link");
    }
    return t("err_other", { code: code });
  }

  function backoffDelay(attempt) {
    return Math.min(5000, 500 * Math.pow(2, attempt));
  }

  /**
   * The media-connection lifetime both pages share, on their state object `st`
   * (`st.media`, `st.mediaRetry`, `st.mediaAttempt`, `st.mediaTrouble`).
   * stopMedia: cancel a pending retry and close the current connection.
   * retryMedia: close it, then call `start` again after the next backoff delay.
   */
  function stopMedia(st) {
    if (st.mediaRetry) {
      clearTimeout(st.mediaRetry);
      st.mediaRetry = null;
    }
    if (st.media) {
      st.media.close();
      st.media = null;
    }
  }

  function retryMedia(st, start, label, reason) {
    var delay = backoffDelay(st.mediaAttempt);
    st.mediaTrouble = true;
    st.mediaAttempt += 1;
    st.mediaRetry = setTimeout(function () {
      st.mediaRetry = null;
      start();
    }, delay);
    if (window.console) {
      console.info(label + " " + reason + ", retry in " + delay + " ms");
    }
  }

  /* ------------------------------------------------------------------ Signal */

  /**
   * The signaling socket. Sends hello {token, lesson} on every (re)connect and reconnects
   * with backoff 0.5 s doubling to 5 s, forever, unless a fatal error code arrives or
   * stop() is called. Handlers: onMessage(msg), onOpen(welcome), onClose(), onFatal(code).
   */
  function Signal(options) {
    this.token = options.token;
    this.lesson = options.lesson;
    this.onMessage = options.onMessage || function () {};
    this.onWelcome = options.onWelcome || function () {};
    this.onClose = options.onClose || function () {};
    this.onFatal = options.onFatal || function () {};
    this.ws = null;
    this.attempt = 0;
    this.welcomed = false;
    this.everWelcomed = false;
    this.stopped = false;
    this.fatalCode = null;
    this.retryTimer = null;
    this.lastHeard = 0;
    this.keepaliveTimer = null;
    this.refreshTimer = null; // renews the session token (see _renewed)
    this.sessionToken = null;
    this.sessionExpires = 0;
    this.serverOffset = 0;
    var self = this;
    window.addEventListener("online", function () {
      if (self.retryTimer && !self.stopped) {
        clearTimeout(self.retryTimer);
        self.retryTimer = null;
        self.connect();
      }
    });
  }

  Signal.prototype.connect = function () {
    if (this.stopped) {
      return;
    }
    var self = this;
    var ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      this._scheduleRetry();
      return;
    }
    this.ws = ws;
    this.welcomed = false;
    this.lastHeard = Date.now();
    ws.onopen = function () {
      if (ws !== self.ws) {
        return;
      }
      self.lastHeard = Date.now();
      ws.send(JSON.stringify({ type: "hello", token: self._helloToken(), lesson: self.lesson }));
    };
    ws.onmessage = function (event) {
      if (ws !== self.ws) {
        return;
      }
      self.lastHeard = Date.now();
      var msg;
      try {
        msg = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (!msg || typeof msg.type !== "string") {
        return;
      }
      if (msg.type === "welcome") {
        self.welcomed = true;
        self.everWelcomed = true;
        self.attempt = 0;
        self._renewed(msg);
        self.onWelcome(msg);
        return;
      }
      if (msg.type === "refreshed") {
        self._renewed(msg);
        self.onMessage(msg); // pages take its fresh ice_servers (TURN credentials)
        return;
      }
      if (msg.type === "error" && FATAL_CODES[msg.code]) {
        self.fatalCode = msg.code;
        self.stop();
        self.onFatal(msg.code, msg);
        return;
      }
      self.onMessage(msg);
    };
    ws.onclose = function (event) {
      if (ws === self.ws && event && event.code === REMOVED_CLOSE_CODE) {
        // the teacher removed this classroom: never reconnect by itself
        self.fatalCode = "removed";
        self.stop();
        self.onFatal("removed", {});
        return;
      }
      self._dropped(ws);
    };
    ws.onerror = function () {
      /* onclose follows */
    };
    if (!this.keepaliveTimer) {
      this.keepaliveTimer = setInterval(function () {
        self._keepalive();
      }, 5000);
    }
  };

  /**
   * Token renewal (README "Token lifetime"): welcome and refreshed carry a short-lived
   * session_token of this page's identity; the page sends refresh {token} with it at half
   * its life, so the socket (and a reconnect, which uses it while valid) outlives the link's
   * token. It is kept in memory only, never in the URL or storage.
   */
  Signal.prototype._renewed = function (msg) {
    var self = this;
    if (this.refreshTimer) {
      clearTimeout(this.refreshTimer);
      this.refreshTimer = null;
    }
    if (!msg.session_token || typeof msg.server_time !== "number") {
      return;
    }
    this.sessionToken = msg.session_token;
    this.serverOffset = msg.server_time - Date.now() / 1000;
    this.sessionExpires = msg.session_expires;
    var delay = Math.max(1000, ((msg.session_expires - msg.server_time) * 1000) / 2);
    this.refreshTimer = setTimeout(function () {
      self.refreshTimer = null;
      self.send({ type: "refresh", token: self.sessionToken });
    }, delay);
  };

  /** The session token while it has some life left, else the link's own token. */
  Signal.prototype._helloToken = function () {
    var now = Date.now() / 1000 + (this.serverOffset || 0);
    if (this.sessionToken && this.sessionExpires - 2 > now) {
      return this.sessionToken;
    }
    return this.token;
  };

  /** Application-level ping: notices a dead link that never delivered a TCP close. */
  Signal.prototype._keepalive = function () {
    var ws = this.ws;
    if (!ws || this.stopped) {
      return;
    }
    var silent = Date.now() - this.lastHeard;
    if (ws.readyState === WebSocket.CONNECTING && silent > 10000) {
      this._dropped(ws);
      return;
    }
    if (ws.readyState !== WebSocket.OPEN) {
      return;
    }
    if (silent > 30000) {
      this._dropped(ws);
      return;
    }
    if (this.welcomed && silent > 10000) {
      this.send({ type: "ping", ts: Date.now() });
    }
  };

  Signal.prototype._dropped = function (ws) {
    if (ws !== this.ws) {
      return;
    }
    this.ws = null;
    this.welcomed = false;
    if (this.refreshTimer) {
      clearTimeout(this.refreshTimer); // the next welcome schedules it again
      this.refreshTimer = null;
    }
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close();
    } catch (e) {
      /* already closed */
    }
    this.onClose();
    this._scheduleRetry();
  };

  Signal.prototype._scheduleRetry = function () {
    if (this.stopped || this.retryTimer) {
      return;
    }
    var self = this;
    var delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.retryTimer = setTimeout(function () {
      self.retryTimer = null;
      self.connect();
    }, delay);
  };

  Signal.prototype.send = function (msg) {
    var ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return false;
    }
    ws.send(JSON.stringify(msg));
    return true;
  };

  Signal.prototype.stop = function () {
    this.stopped = true;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    if (this.keepaliveTimer) {
      clearInterval(this.keepaliveTimer);
      this.keepaliveTimer = null;
    }
    if (this.refreshTimer) {
      clearTimeout(this.refreshTimer);
      this.refreshTimer = null;
    }
    var ws = this.ws;
    this.ws = null;
    this.welcomed = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch (e) {
        /* ignore */
      }
    }
  };

  /* ------------------------------------------------------------------ StatsTotals */

  /**
   * Running totals of inbound video framesDecoded and inbound audio bytesReceived (and, for a
   * publisher, outbound framesEncoded and audio bytesSent) over every peer connection the
   * page has had. A connection's last known figures are folded into the base when it is
   * retired, so the totals never go backwards.
   */
  function StatsTotals() {
    this.base = zeroCounts();
    this.live = new Map(); // pc -> counts of that pc
    this.pairs = new Map(); // pc -> its selected ICE candidate pair (see candidate())
  }

  /** The selected candidate pair of a getStats() report: who relays (TURN) and how. */
  function selectedPair(report) {
    var pairId = null;
    report.forEach(function (s) {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        pairId = s.selectedCandidatePairId;
      }
    });
    var pair = pairId ? report.get(pairId) : null;
    if (!pair) {
      return null;
    }
    var local = report.get(pair.localCandidateId) || {};
    var remote = report.get(pair.remoteCandidateId) || {};
    return {
      localType: local.candidateType || null,
      remoteType: remote.candidateType || null,
      relayProtocol: local.relayProtocol || null, // udp | tcp | tls: browser to TURN
      relayed: local.candidateType === "relay" || remote.candidateType === "relay"
    };
  }

  /** The selected candidate pair of ``pc`` at its last poll (null before one). */
  StatsTotals.prototype.candidate = function (pc) {
    return (pc && this.pairs.get(pc)) || null;
  };

  function zeroCounts() {
    return { framesDecoded: 0, audioBytesReceived: 0, framesEncoded: 0, audioBytesSent: 0 };
  }

  StatsTotals.prototype.track = function (pc) {
    if (!this.live.has(pc)) {
      this.live.set(pc, zeroCounts());
    }
  };

  /** Refresh one connection's figures from getStats(); resolves to its counts (or null). */
  StatsTotals.prototype.poll = function (pc) {
    var self = this;
    var counts = this.live.get(pc);
    if (!counts) {
      return Promise.resolve(null);
    }
    return pc.getStats().then(
      function (report) {
        var now = zeroCounts();
        report.forEach(function (s) {
          var kind = s.kind || s.mediaType;
          if (s.type === "inbound-rtp") {
            if (kind === "video") {
              now.framesDecoded += s.framesDecoded || 0;
            } else if (kind === "audio") {
              now.audioBytesReceived += s.bytesReceived || 0;
            }
          } else if (s.type === "outbound-rtp") {
            if (kind === "video") {
              now.framesEncoded += s.framesEncoded || 0;
            } else if (kind === "audio") {
              now.audioBytesSent += s.bytesSent || 0;
            }
          }
        });
        if (self.live.has(pc)) {
          self.pairs.set(pc, selectedPair(report));
        }
        for (var key in now) {
          counts[key] = Math.max(counts[key], now[key]);
        }
        return counts;
      },
      function () {
        return counts;
      }
    );
  };

  /** Take a last reading, fold it into the base, then close the connection. */
  StatsTotals.prototype.retire = function (pc) {
    var self = this;
    var finish = function () {
      var counts = self.live.get(pc);
      if (counts) {
        for (var key in counts) {
          self.base[key] += counts[key];
        }
        self.live.delete(pc);
        self.pairs.delete(pc);
      }
      try {
        pc.close();
      } catch (e) {
        /* ignore */
      }
    };
    var timeout = new Promise(function (resolve) {
      setTimeout(resolve, 1000);
    });
    return Promise.race([this.poll(pc), timeout]).then(finish, finish);
  };

  StatsTotals.prototype.totals = function () {
    var sum = zeroCounts();
    var key;
    for (key in this.base) {
      sum[key] = this.base[key];
    }
    this.live.forEach(function (counts) {
      for (var k in counts) {
        sum[k] += counts[k];
      }
    });
    return sum;
  };

  /* ------------------------------------------------------------------ MediaSession */

  function waitIceGathering(pc, ms) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === "complete") {
        resolve(true);
        return;
      }
      var timer = setTimeout(function () {
        pc.removeEventListener("icegatheringstatechange", check);
        resolve(false);
      }, ms);
      function check() {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(timer);
          pc.removeEventListener("icegatheringstatechange", check);
          resolve(true);
        }
      }
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  /**
   * One peer connection negotiated over the signaling socket.
   * options: purpose ("publish"|"subscribe"), signal, iceServers, stats (StatsTotals),
   *          setup(pc) adds tracks/transceivers, onTrack(event), onConnected(), onFail(reason),
   *          onStateChange(state), onOfferSent(session) (the offer left on the socket),
   *          onTurnRefused(errorCode) (a TURN server refused the credentials; at most once).
   * It calls onFail at most once: on "failed", on "disconnected" for more than 3 s, when no
   * answer arrives within 10 s, or when ICE does not connect within 20 s of the answer.
   */
  function MediaSession(options) {
    this.options = options;
    this.purpose = options.purpose;
    this.pc = null;
    this.closed = false;
    this.failed = false;
    this.offerSent = false;
    this.connected = false;
    this.turnRefused = false; // a TURN server refused this connection's credentials
    this.timers = {};
  }

  MediaSession.prototype.start = function () {
    var self = this;
    var opts = this.options;
    var pc;
    try {
      // "balanced": aiortc (the relay) answering a Chrome max-bundle offer never completes
      // DTLS once the relay uses max-bundle itself (needed for several m-lines of a kind);
      // the relay's answer bundles everything onto one transport either way.
      pc = new RTCPeerConnection({ iceServers: opts.iceServers || [], bundlePolicy: "balanced" });
    } catch (e) {
      this._fail("pc_error");
      return Promise.resolve();
    }
    this.pc = pc;
    if (opts.stats) {
      opts.stats.track(pc);
    }
    pc.ontrack = function (event) {
      if (!self.closed && opts.onTrack) {
        opts.onTrack(event);
      }
    };
    pc.onicecandidate = function (event) {
      if (self.closed || !self.offerSent) {
        return; // candidates gathered before the offer went out are in its SDP
      }
      var c = event.candidate;
      var msg = { type: "ice", purpose: self.purpose, candidate: "", sdpMid: "0", sdpMLineIndex: 0 };
      if (c && c.candidate) {
        msg.candidate = c.candidate;
        msg.sdpMid = c.sdpMid;
        msg.sdpMLineIndex = c.sdpMLineIndex;
      }
      opts.signal.send(msg);
    };
    pc.onconnectionstatechange = function () {
      self._onState();
    };
    // A TURN server that refuses the credentials (wrong secret, expired): ICE goes on with
    // the other candidates; the page is told once so it can say so (onTurnRefused).
    pc.onicecandidateerror = function (event) {
      var url = event.url || "";
      if (self.closed || self.turnRefused || url.indexOf("turn") !== 0) {
        return;
      }
      if (event.errorCode === 401 || event.errorCode === 403 || event.errorCode === 431) {
        self.turnRefused = true;
        if (opts.onTurnRefused) {
          opts.onTurnRefused(event.errorCode);
        }
      }
    };
    try {
      opts.setup(pc);
    } catch (e) {
      this._fail("setup_error");
      return Promise.resolve();
    }
    return pc
      .createOffer()
      .then(function (offer) {
        return pc.setLocalDescription(offer);
      })
      .then(function () {
        return waitIceGathering(pc, 2000);
      })
      .then(function () {
        if (self.closed) {
          return;
        }
        var sent = opts.signal.send({
          type: "offer",
          purpose: self.purpose,
          sdp: pc.localDescription.sdp
        });
        if (!sent) {
          self._fail("socket_closed");
          return;
        }
        self.offerSent = true;
        if (opts.onOfferSent) {
          opts.onOfferSent(self);
        }
        self._timer("answer", 10000, "answer_timeout");
      })
      .catch(function () {
        self._fail("offer_error");
      });
  };

  MediaSession.prototype.handleAnswer = function (sdp) {
    var self = this;
    if (this.closed || !this.pc || this.pc.signalingState !== "have-local-offer") {
      return Promise.resolve();
    }
    this._clear("answer");
    this._timer("connect", 20000, "connect_timeout");
    return this.pc.setRemoteDescription({ type: "answer", sdp: sdp }).catch(function () {
      self._fail("bad_answer");
    });
  };

  MediaSession.prototype._onState = function () {
    if (this.closed || !this.pc) {
      return;
    }
    var state = this.pc.connectionState;
    if (this.options.onStateChange) {
      this.options.onStateChange(state);
    }
    if (state === "connected") {
      this.connected = true;
      this._clear("connect");
      this._clear("disconnected");
      if (this.options.onConnected) {
        this.options.onConnected();
      }
    } else if (state === "disconnected") {
      this._timer("disconnected", 3000, "disconnected");
    } else if (state === "failed" || state === "closed") {
      this._fail(state);
    }
  };

  MediaSession.prototype._timer = function (name, ms, reason) {
    var self = this;
    this._clear(name);
    this.timers[name] = setTimeout(function () {
      delete self.timers[name];
      self._fail(reason);
    }, ms);
  };

  MediaSession.prototype._clear = function (name) {
    if (this.timers[name]) {
      clearTimeout(this.timers[name]);
      delete this.timers[name];
    }
  };

  MediaSession.prototype._fail = function (reason) {
    if (this.closed || this.failed) {
      return;
    }
    this.failed = true;
    if (this.options.onFail) {
      this.options.onFail(reason);
    }
  };

  MediaSession.prototype.state = function () {
    return this.pc ? this.pc.connectionState : "new";
  };

  /** Stop for good; the connection is closed after a last stats reading. */
  MediaSession.prototype.close = function () {
    if (this.closed) {
      return;
    }
    this.closed = true;
    for (var name in this.timers) {
      clearTimeout(this.timers[name]);
    }
    this.timers = {};
    var pc = this.pc;
    if (!pc) {
      return;
    }
    pc.ontrack = pc.onicecandidate = pc.onconnectionstatechange = pc.onicecandidateerror = null;
    if (this.options.stats) {
      this.options.stats.retire(pc);
    } else {
      pc.close();
    }
  };

  /* ------------------------------------------------------------------ two-way helpers */

  /**
   * Offers in flight on one socket, oldest first. The server handles a socket's messages in
   * order, so an `error` with ref "offer" (and no purpose of its own) answers the oldest
   * offer still waiting; an `answer` names its purpose.
   */
  function OfferLedger() {
    this.pending = [];
  }
  OfferLedger.prototype.sent = function (purpose) {
    this.pending.push(purpose);
  };
  OfferLedger.prototype.answered = function (purpose) {
    var i = this.pending.indexOf(purpose);
    if (i >= 0) {
      this.pending.splice(i, 1);
    }
  };
  /** The purpose an offer error is about (msg.purpose when the server says it). */
  OfferLedger.prototype.refused = function (msg) {
    if (msg && typeof msg.purpose === "string") {
      this.answered(msg.purpose);
      return msg.purpose;
    }
    return this.pending.length ? this.pending.shift() : null;
  };
  OfferLedger.prototype.clear = function () {
    this.pending = [];
  };

  /** One receiver's or sender's counters from its own getStats(): frames and bytes. */
  function rtpCounts(senderOrReceiver) {
    var zero = { framesDecoded: 0, bytesReceived: 0, framesEncoded: 0, bytesSent: 0 };
    if (!senderOrReceiver || !senderOrReceiver.getStats) {
      return Promise.resolve(zero);
    }
    return senderOrReceiver.getStats().then(
      function (report) {
        report.forEach(function (s) {
          if (s.type === "inbound-rtp") {
            zero.framesDecoded += s.framesDecoded || 0;
            zero.bytesReceived += s.bytesReceived || 0;
          } else if (s.type === "outbound-rtp") {
            zero.framesEncoded += s.framesEncoded || 0;
            zero.bytesSent += s.bytesSent || 0;
          }
        });
        return zero;
      },
      function () {
        return zero;
      }
    );
  }

  /**
   * Ask for one codec (plus RTX) on a transceiver, where the browser allows it. For a
   * receiving transceiver (receive = true) this also keeps the offer small: a Chrome video
   * m-line lists ~20 codecs (~4 KB), and a grid offer has 9 of them (offers are <= 48 KiB).
   */
  function preferCodec(transceiver, kind, name, receive) {
    try {
      var api = receive ? window.RTCRtpReceiver : window.RTCRtpSender;
      if (!transceiver.setCodecPreferences || !api || !api.getCapabilities) {
        return;
      }
      var caps = api.getCapabilities(kind);
      if (!caps || !caps.codecs) {
        return;
      }
      var want = (kind + "/" + name).toLowerCase();
      var chosen = caps.codecs.filter(function (c) {
        return c.mimeType.toLowerCase() === want;
      });
      var rtx = caps.codecs.filter(function (c) {
        return c.mimeType.toLowerCase() === kind + "/rtx";
      });
      if (chosen.length) {
        transceiver.setCodecPreferences(chosen.concat(rtx));
      }
    } catch (e) {
      /* the browser's default order (VP8 and Opus first in every browser we target) */
    }
  }

  /** Messages of the two-way lesson an older server does not know (unknown_type: quiet). */
  var TWO_WAY_TYPES = {
    "uplink-state": true, "grid-view": true, "call-on-stage": true, "leave-stage": true,
    "mute-classroom": true, "remove-classroom": true, "share": true
  };

  /** False on a page browsers give no camera: plain http at another machine's address. */
  function secureContext() {
    return window.isSecureContext !== false;
  }

  window.Classroom = {
    lang: lang,
    secureContext: secureContext,
    params: params,
    strings: STRINGS,
    t: t,
    applyI18n: applyI18n,
    readToken: readToken,
    lessonFromPath: lessonFromPath,
    errorText: errorText,
    FATAL_CODES: FATAL_CODES,
    backoffDelay: backoffDelay,
    stopMedia: stopMedia,
    retryMedia: retryMedia,
    Signal: Signal,
    StatsTotals: StatsTotals,
    MediaSession: MediaSession,
    OfferLedger: OfferLedger,
    rtpCounts: rtpCounts,
    preferCodec: preferCodec,
    TWO_WAY_TYPES: TWO_WAY_TYPES
  };
})();
