// @ts-check
/* Replay of a recorded lesson from a signed link (/replay/{id}?exp=...&sig=...), on a phone
 * or a thin link: adaptive HLS (hls.js when the browser has MSE, else the browser's own HLS,
 * else the MP4), chapter marks on the timeline, an audio-only switch. hls.js is a classic
 * script (/vendor/hls.min.js) loaded before this module: window.Hls.
 */
import { $, el } from "./dom.js";
import { applyI18n, translator } from "./i18n.js";
import { REPLAY } from "./strings.js";

const t = translator(REPLAY);
const video = $("#video", HTMLVideoElement);
const status = $("#status");
const autoQuality = $('[data-action="auto-quality"]', HTMLButtonElement);
const rid = decodeURIComponent(location.pathname.split("/").pop() || "");
const query = new URLSearchParams(location.search);
/** @type {any} the hls.js player */
let hls = null;
/** @type {any} the recording of /api/replay/{id} */
let info = null;
/** @type {{height: number, bitrate: number}[]} */
let levels = [];
let mode = "none";
let audioMode = "";
let lowTicks = 0;
let highTicks = 0;
let lowestVideo = 0;

/** @param {number} s */
function fmt(s) {
  s = Math.floor(s);
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

function tier() {
  if (audioMode) {
    return "audio";
  }
  const l = hls ? levels[hls.currentLevel] : null;
  return l ? l.height + "p" : mode;
}

function showLevel() {
  const name = tier();
  $("#level").textContent = name === "audio" ? t("audio_level") : name;
}

/** @param {{start: number, title: string}[] | undefined} list @param {number} total */
function chapters(list, total) {
  const ol = $("#chapters");
  const bar = $("#timeline");
  (list || []).forEach((ch, i) => {
    const li = el("li");
    const b = el("button", { type: "button", "data-action": "seek-chapter", "data-start": ch.start, "data-index": i },
      fmt(ch.start) + "  " + ch.title);
    b.addEventListener("click", () => {
      video.currentTime = ch.start + 0.01;
      video.play().catch(() => {});
    });
    li.appendChild(b);
    ol.appendChild(li);
    if (total > 0) {
      const m = el("span", { className: "mark", title: ch.title });
      m.style.left = (100 * ch.start / total) + "%";
      bar.appendChild(m);
    }
  });
}

/** @param {string} src @param {number} at @param {boolean} play */
function makeHls(src, at, play) {
  const Hls = window.Hls;
  if (hls) {
    hls.destroy();
  }
  /* autoStartLoad off: nothing is downloaded before the student presses play */
  hls = new Hls({ enableWorker: false, capLevelToPlayerSize: true, startLevel: -1,
    autoStartLoad: !!play });
  hls.on(Hls.Events.MANIFEST_PARSED, (/** @type {unknown} */ e, /** @type {any} */ data) => {
    if (!audioMode) {
      levels = data.levels;
      lowestVideo = Math.min(...levels.map((l) => l.bitrate));
    }
    if (at > 0) {
      video.currentTime = at;
    }
    if (play) {
      video.play().catch(() => {});
    }
    showLevel();
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, showLevel);
  hls.on(Hls.Events.ERROR, (/** @type {unknown} */ e, /** @type {any} */ data) => {
    if (data.fatal && data.type === Hls.ErrorTypes.NETWORK_ERROR) {
      hls.startLoad();
    } else if (data.fatal && data.type === Hls.ErrorTypes.MEDIA_ERROR) {
      hls.recoverMediaError();
    } else if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR && !audioMode &&
               hls.currentLevel === 0 && hls.bandwidthEstimate < lowestVideo) {
      lowTicks += 2;
    }
  });
  hls.loadingStarted = !!play;
  hls.loadSource(src);
  hls.attachMedia(video);
}

/** Switch to (or from) the audio-only rendition at the same moment. @param {string} src */
function switchTo(src) {
  const at = video.currentTime;
  const play = !video.paused;
  if (hls) {
    makeHls(src, at, play);
  } else {
    video.src = src;
    video.currentTime = at;
    if (play) {
      video.play().catch(() => {});
    }
  }
}

/** hls.js drops audio-only variants of a master with video. @param {string} why */
function useAudio(why) {
  if (audioMode) {
    return;
  }
  audioMode = why;
  lowTicks = highTicks = 0;
  switchTo(info.media + "hls/audio/index.m3u8");
  autoQuality.hidden = false;
  showLevel();
}

function useVideo() {
  if (!audioMode) {
    return;
  }
  audioMode = "";
  lowTicks = highTicks = 0;
  switchTo(info.media + "hls/master.m3u8");
  autoQuality.hidden = true;
  showLevel();
}

function buffered() {
  const b = video.buffered;
  const now = video.currentTime;
  for (let i = 0; i < b.length; i++) {
    if (b.start(i) <= now + 0.1 && b.end(i) > now) {
      return b.end(i) - now;
    }
  }
  return 0;
}

/** The thin-link rule: below the lowest video rung, starving -> audio. */
function watchLink() {
  if (!hls || video.paused || !lowestVideo) {
    return;
  }
  const bw = hls.bandwidthEstimate || 0;
  if (!audioMode) {
    const starving = buffered() < 3 || video.readyState < 3;
    lowTicks = (bw > 0 && bw < lowestVideo && starving) ? lowTicks + 1 : 0;
    if (lowTicks >= 3) {
      useAudio("auto");
    }
  } else if (audioMode === "auto") {
    highTicks = bw > lowestVideo * 1.5 ? highTicks + 1 : 0;
    if (highTicks >= 15) {
      useVideo();
    }
  }
}

function start() {
  const base = info.media;
  const master = base + "hls/master.m3u8";
  const dl = $("#download", HTMLAnchorElement);
  dl.href = base + "lesson.mp4?download=1";
  dl.hidden = false;
  video.poster = base + "poster.jpg";
  const track = el("track");
  track.kind = "chapters";
  track.src = base + "chapters.vtt";
  track.default = true;
  video.appendChild(track);
  if (window.Hls && window.Hls.isSupported()) {
    mode = "hls.js";
    makeHls(master, 0, false);
    video.addEventListener("play", () => {
      if (hls && !hls.loadingStarted) {
        hls.loadingStarted = true;
        hls.startLoad(video.currentTime || -1);
      }
    });
    setInterval(watchLink, 1000);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    mode = "native-hls";
    video.src = master; /* Safari/iOS: its own ABR incl. the audio rung */
  } else {
    mode = "mp4";
    video.src = base + "lesson.mp4";
  }
  showLevel();
}

window.classroomStats = function () {
  const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
  const audioRung = !!info && (info.renditions || []).some((/** @type {any} */ r) => r.kind === "audio");
  return Promise.resolve({
    connectionState: mode,
    lessonState: "ended",
    framesDecoded: q ? q.totalVideoFrames : 0,
    audioBytesReceived: 0,
    videoTier: tier(),
    audioMode,
    currentTime: video.currentTime,
    paused: video.paused,
    bandwidthEstimate: hls ? hls.bandwidthEstimate : 0,
    levels: levels.map((l) => l.height + "p").concat(audioRung ? ["audio"] : [])
  });
};

function main() {
  applyI18n(t);
  $('[data-action="audio-only"]').addEventListener("click", () => useAudio("manual"));
  autoQuality.addEventListener("click", () => {
    useVideo();
    if (hls) {
      hls.currentLevel = -1;
    }
  });
  status.textContent = t("loading");
  const signed = new URLSearchParams({ exp: query.get("exp") || "", sig: query.get("sig") || "" });
  fetch("/api/replay/" + encodeURIComponent(rid) + "?" + signed)
    .then((r) => r.json().then((b) => ({ ok: r.ok, body: b })))
    .then((res) => {
      if (!res.ok) {
        status.textContent = t("expired");
        return;
      }
      info = res.body;
      $("#title").textContent = info.title || info.lesson;
      document.title = (info.title || info.lesson) + " · " + t("replay_title");
      $("#meta").textContent = [info.teacher, info.school, info.date, fmt(info.duration || 0)].filter(Boolean).join(" · ");
      if (info.state !== "ready") {
        status.textContent = t("not_ready");
        return;
      }
      status.textContent = "";
      chapters(info.chapters, info.duration);
      start();
    })
    .catch(() => {
      status.textContent = t("expired");
    });
}

main();
