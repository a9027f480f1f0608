/* Replay of a recorded lesson from a signed link (/replay/{id}?exp=...&sig=...), on a phone
   or a thin link: adaptive HLS (hls.js when the browser has MSE, else the browser's own HLS,
   else the MP4), chapter marks on the timeline, an audio-only switch. */
(function () {
  "use strict";
  var EN = document.documentElement.lang === "en";
  var TEXT = {
    replay_title: ["课程回放", "Lesson replay"], chapters: ["章节", "Chapters"],
    audio_only: ["仅听声音（省流量）", "Audio only (saves data)"],
    auto_quality: ["自动画质", "Auto quality"], download: ["下载 MP4", "Download MP4"],
    expired: ["链接无效或已过期，请重新获取", "The link is invalid or has expired"],
    not_ready: ["回放正在生成，请稍后再试", "The replay is being prepared; try again soon"],
    loading: ["正在加载…", "Loading…"], audio_level: ["仅声音", "audio only"]
  };
  function t(key) { var v = TEXT[key]; return v ? v[EN ? 1 : 0] : key; }
  document.querySelectorAll("[data-i18n]").forEach(function (el) { el.textContent = t(el.getAttribute("data-i18n")); });
  var video = document.getElementById("video"), status = document.getElementById("status");
  var rid = decodeURIComponent(location.pathname.split("/").pop());
  var query = new URLSearchParams(location.search);
  var hls = null, info = null, levels = [], mode = "none";

  function fmt(s) { s = Math.floor(s); return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); }
  function tier() {
    if (audioMode) return "audio";
    var l = hls ? levels[hls.currentLevel] : null;
    return l ? l.height + "p" : mode;
  }
  function showLevel() {
    var name = tier();
    document.getElementById("level").textContent = name === "audio" ? t("audio_level") : name;
  }
  function chapters(list, duration) {
    var ol = document.getElementById("chapters"), bar = document.getElementById("timeline");
    (list || []).forEach(function (ch, i) {
      var li = document.createElement("li"), b = document.createElement("button");
      b.type = "button"; b.dataset.action = "seek-chapter"; b.dataset.start = ch.start; b.dataset.index = i;
      b.textContent = fmt(ch.start) + "  " + ch.title;
      b.addEventListener("click", function () { video.currentTime = ch.start + 0.01; video.play().catch(function () {}); });
      li.appendChild(b); ol.appendChild(li);
      if (duration > 0) {
        var m = document.createElement("span"); m.className = "mark"; m.title = ch.title;
        m.style.left = (100 * ch.start / duration) + "%"; bar.appendChild(m);
      }
    });
  }
  var audioMode = "", lowTicks = 0, highTicks = 0, lowestVideo = 0;
  function makeHls(src, at, play) {
    if (hls) { hls.destroy(); }
    /* autoStartLoad off: nothing is downloaded before the student presses play */
    hls = new window.Hls({ enableWorker: false, capLevelToPlayerSize: true, startLevel: -1,
                           autoStartLoad: !!play });
    hls.on(window.Hls.Events.MANIFEST_PARSED, function (e, data) {
      if (!audioMode) {
        levels = data.levels;
        lowestVideo = Math.min.apply(null, levels.map(function (l) { return l.bitrate; }));
      }
      if (at > 0) video.currentTime = at;
      if (play) video.play().catch(function () {});
      showLevel();
    });
    hls.on(window.Hls.Events.LEVEL_SWITCHED, showLevel);
    hls.on(window.Hls.Events.ERROR, function (e, data) {
      if (data.fatal && data.type === window.Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
      else if (data.fatal && data.type === window.Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else if (data.details === window.Hls.ErrorDetails.BUFFER_STALLED_ERROR && !audioMode &&
               hls.currentLevel === 0 && hls.bandwidthEstimate < lowestVideo) lowTicks += 2;
    });
    hls.loadingStarted = !!play;
    hls.loadSource(src);
    hls.attachMedia(video);
  }
  function useAudio(why) {  /* hls.js drops audio-only variants of a master with video */
    if (audioMode) return;
    audioMode = why; lowTicks = highTicks = 0;
    var at = video.currentTime, play = !video.paused;
    if (hls) makeHls(info.media + "hls/audio/index.m3u8", at, play);
    else { video.src = info.media + "hls/audio/index.m3u8"; video.currentTime = at; if (play) video.play().catch(function () {}); }
    document.querySelector('[data-action="auto-quality"]').hidden = false;
    showLevel();
  }
  function useVideo() {
    if (!audioMode) return;
    audioMode = ""; lowTicks = highTicks = 0;
    var at = video.currentTime, play = !video.paused;
    if (hls) makeHls(info.media + "hls/master.m3u8", at, play);
    else { video.src = info.media + "hls/master.m3u8"; video.currentTime = at; if (play) video.play().catch(function () {}); }
    document.querySelector('[data-action="auto-quality"]').hidden = true;
    showLevel();
  }
  function buffered() {
    var b = video.buffered, t = video.currentTime;
    for (var i = 0; i < b.length; i++) if (b.start(i) <= t + 0.1 && b.end(i) > t) return b.end(i) - t;
    return 0;
  }
  function watchLink() {  /* the thin-link rule: below the lowest video rung, starving -> audio */
    if (!hls || video.paused || !lowestVideo) return;
    var bw = hls.bandwidthEstimate || 0;
    if (!audioMode) {
      var starving = buffered() < 3 || video.readyState < 3;
      lowTicks = (bw > 0 && bw < lowestVideo && starving) ? lowTicks + 1 : 0;
      if (lowTicks >= 3) useAudio("auto");
    } else if (audioMode === "auto") {
      highTicks = bw > lowestVideo * 1.5 ? highTicks + 1 : 0;
      if (highTicks >= 15) useVideo();
    }
  }
  function start() {
    var base = info.media, master = base + "hls/master.m3u8";
    var dl = document.getElementById("download"); dl.href = base + "lesson.mp4?download=1"; dl.hidden = false;
    video.poster = base + "poster.jpg";
    var track = document.createElement("track");
    track.kind = "chapters"; track.src = base + "chapters.vtt"; track.default = true; video.appendChild(track);
    if (window.Hls && window.Hls.isSupported()) {
      mode = "hls.js";
      makeHls(master, 0, false);
      video.addEventListener("play", function () {
        if (hls && !hls.loadingStarted) { hls.loadingStarted = true; hls.startLoad(video.currentTime || -1); }
      });
      setInterval(watchLink, 1000);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      mode = "native-hls"; video.src = master;  /* Safari/iOS: its own ABR incl. the audio rung */
    } else {
      mode = "mp4"; video.src = base + "lesson.mp4";
    }
    showLevel();
  }
  document.querySelector('[data-action="audio-only"]').addEventListener("click", function () {
    useAudio("manual");
  });
  document.querySelector('[data-action="auto-quality"]').addEventListener("click", function () {
    useVideo();
    if (hls) hls.currentLevel = -1;
  });
  window.classroomStats = function () {
    var q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    return Promise.resolve({
      connectionState: mode, lessonState: "ended",
      framesDecoded: q ? q.totalVideoFrames : 0,
      audioBytesReceived: 0,
      videoTier: tier(), audioMode: audioMode, currentTime: video.currentTime, paused: video.paused,
      bandwidthEstimate: hls ? hls.bandwidthEstimate : 0,
      levels: levels.map(function (l) { return l.height + "p"; }).concat(
        (info && (info.renditions || []).some(function (r) { return r.kind === "audio"; })) ? ["audio"] : [])
    });
  };
  status.textContent = t("loading");
  fetch("/api/replay/" + encodeURIComponent(rid) + "?" + new URLSearchParams({ exp: query.get("exp") || "", sig: query.get("sig") || "" }))
    .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
    .then(function (res) {
      if (!res.ok) { status.textContent = t("expired"); return; }
      info = res.body;
      document.getElementById("title").textContent = info.title || info.lesson;
      document.title = (info.title || info.lesson) + " · " + t("replay_title");
      document.getElementById("meta").textContent = [info.teacher, info.school, info.date, fmt(info.duration || 0)].filter(Boolean).join(" · ");
      if (info.state !== "ready") { status.textContent = t("not_ready"); return; }
      status.textContent = "";
      chapters(info.chapters, info.duration);
      start();
    })
    .catch(function () { status.textContent = t("expired"); });
})();
