// @ts-check
/* Replay of a recorded lesson from a signed link (/replay/{id}?exp=...&sig=...), on a phone
 * or a thin link: adaptive HLS (hls.js when the browser has MSE, else the browser's own HLS,
 * else the MP4), chapter marks on the timeline, an audio-only switch. hls.js is a classic
 * script (/vendor/hls.min.js) this module loads when the browser has MSE: window.Hls; when it
 * is missing the page still plays (the browser's own HLS, else the MP4, else a message).
 *
 * What the classrooms saw (docs/recording.md): the teacher's HLS carries the sound; the
 * shared slides and the classroom on stage are their own MP4s (info.lines: offset, ranges
 * in lesson seconds), kept in step with the teacher's clock. While a share is on the slides
 * are the main picture with the teacher small in a corner; while a classroom is on stage it
 * is beside the teacher; the viewer can pick another view (the buttons under the player).
 */
import { $, el } from "./dom.js";
import { applyI18n, lang, translator } from "./i18n.js";
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
/** @type {"auto" | "teacher" | "share" | "stage"} the viewer's choice */
let view = "auto";
/** @type {Record<string, {el: HTMLVideoElement, offset: number, ranges: number[][]}>} */
const lines = {};
const player = $("#player");
const corner = $("#corner", HTMLCanvasElement);

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
  /* the player in use (hls.js, native-hls, mp4) is for tests, not for people */
  document.body.dataset.player = mode;
  const l = hls ? levels[hls.currentLevel] : null;
  $("#level").textContent = name === "audio" ? t("audio_level") : l ? name : "";
}

/** A chapter's title in the page's language only. @param {any} ch */
function chapterTitle(ch) {
  if (typeof ch.label !== "string" || !ch.kind) {
    return ch.title; /* a recording packaged before chapters had labels */
  }
  const kind = t("chapter_" + ch.kind);
  return ch.label ? t("chapter_with", { kind, label: ch.label }) : kind;
}

/** @param {{start: number, title: string}[] | undefined} list @param {number} total */
function chapters(list, total) {
  const ol = $("#chapters");
  const bar = $("#timeline");
  (list || []).forEach((ch, i) => {
    const li = el("li");
    const title = chapterTitle(ch);
    const b = el("button", { type: "button", "data-action": "seek-chapter", "data-start": ch.start, "data-index": i },
      fmt(ch.start) + "  " + title);
    b.addEventListener("click", () => {
      video.currentTime = ch.start + 0.01;
      video.play().catch(() => {});
    });
    li.appendChild(b);
    ol.appendChild(li);
    if (total > 0) {
      const m = el("span", { className: "mark", title });
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
  if (window.Hls && window.Hls.isSupported && window.Hls.isSupported()) {
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
  video.addEventListener("error", () => {
    status.textContent = t("no_player");
  });
  showLevel();
  setupLines();
}

/** hls.js (when the browser has MSE and the server has it), then `done`. @param {() => void} done */
function loadHls(done) {
  if (!window.MediaSource || window.Hls) {
    done();
    return;
  }
  const script = document.createElement("script");
  script.src = "/vendor/hls.min.js";
  script.onload = done;
  script.onerror = done; /* missing: the browser's own HLS, else the MP4 */
  document.head.appendChild(script);
}

// ---- the share and the stage -------------------------------------------------------------
/** @param {{ranges: number[][]}} line @param {number} at lesson seconds */
function onAt(line, at) {
  return line.ranges.some((r) => at >= r[0] && at < r[1]);
}

function setupLines() {
  for (const entry of info.lines || []) {
    if (entry.kind !== "share" && entry.kind !== "stage") {
      continue;
    }
    const lineEl = $("#" + entry.kind, HTMLVideoElement);
    lineEl.src = info.media + entry.uri;
    lines[entry.kind] = { el: lineEl, offset: entry.offset || 0, ranges: entry.ranges || [] };
    $('[data-view="' + entry.kind + '"]').hidden = false;
  }
  if (!Object.keys(lines).length) {
    return;
  }
  $("#views").hidden = false;
  document.querySelectorAll('[data-action="view"]').forEach((b) => {
    b.addEventListener("click", () => {
      const wanted = /** @type {any} */ (b.getAttribute("data-view"));
      view = view === wanted ? "auto" : wanted; /* pressing the pressed one: follow the lesson */
      layout();
    });
  });
  ["play", "pause", "seeking", "seeked", "ratechange", "timeupdate"].forEach((e) => video.addEventListener(e, layout));
  setInterval(layout, 250);
  requestAnimationFrame(drawCorner);
  layout();
}

/** Which picture is the main one now: the viewer's choice, else what the lesson showed. */
function current() {
  const at = video.currentTime;
  if (view !== "auto") {
    return view === "teacher" || (lines[view] && onAt(lines[view], at)) ? view : "teacher";
  }
  if (lines.share && onAt(lines.share, at)) {
    return "share";
  }
  if (lines.stage && onAt(lines.stage, at)) {
    return "stage";
  }
  return "teacher";
}

function layout() {
  const shown = audioMode ? "teacher" : current(); /* audio only: no picture is downloaded */
  player.dataset.layout = shown;
  corner.hidden = shown !== "share" || audioMode !== "";
  for (const [name, line] of Object.entries(lines)) {
    const on = name === shown;
    line.el.hidden = !on;
    if (!on) {
      if (!line.el.paused) {
        line.el.pause();
      }
      continue;
    }
    const target = Math.max(0, video.currentTime - line.offset);
    if (Math.abs(line.el.currentTime - target) > 0.4 && !line.el.seeking) {
      line.el.currentTime = target;
    }
    line.el.playbackRate = video.playbackRate;
    if (video.paused && !line.el.paused) {
      line.el.pause();
    } else if (!video.paused && line.el.paused) {
      line.el.play().catch(() => {});
    }
  }
  document.querySelectorAll('[data-action="view"]').forEach((b) => {
    const name = b.getAttribute("data-view");
    b.setAttribute("aria-pressed", String(name === shown));
    /** @type {HTMLButtonElement} */ (b).disabled = name !== "teacher" && !!lines[name || ""] && !onAt(lines[name || ""], video.currentTime);
  });
}

/** The teacher, small in a corner over the slides (the same element's frames: no 2nd download). */
function drawCorner() {
  if (!corner.hidden && video.videoWidth) {
    const ctx = corner.getContext("2d");
    const h = Math.round(corner.width * video.videoHeight / video.videoWidth);
    if (corner.height !== h) {
      corner.height = h;
    }
    if (ctx) {
      ctx.drawImage(video, 0, 0, corner.width, corner.height);
    }
  }
  requestAnimationFrame(drawCorner);
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
    levels: levels.map((l) => l.height + "p").concat(audioRung ? ["audio"] : []),
    player: mode,
    lang,
    view,
    layout: player.dataset.layout,
    lines: Object.fromEntries(Object.entries(lines).map(([name, line]) => [name, {
      currentTime: line.el.currentTime, paused: line.el.paused, hidden: line.el.hidden,
      videoWidth: line.el.videoWidth, readyState: line.el.readyState
    }]))
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
      loadHls(start);
    })
    .catch(() => {
      status.textContent = t("expired");
    });
}

main();
