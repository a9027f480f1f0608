// @ts-check
/* The camera and microphone of the teacher console and the classroom TV. */

/** False on a page browsers give no camera: plain http at another machine's address. */
export function secureContext() {
  return window.isSecureContext !== false;
}

/**
 * Why this page cannot ask for a camera at all: "insecure" (not https), "getUserMedia"
 * (the browser has none), or null when it can ask.
 * @returns {"insecure" | "getUserMedia" | null}
 */
export function cameraUnavailable() {
  if (!secureContext()) {
    return "insecure";
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return "getUserMedia";
  }
  return null;
}

/**
 * Open the first of `choices` the browser grants (e.g. camera and microphone, then the
 * microphone alone, then the camera alone); rejects with the last refusal.
 * @param {MediaStreamConstraints[]} choices
 * @returns {Promise<MediaStream>}
 */
export function openCamera(choices) {
  /** @type {Promise<MediaStream>} */
  let attempt = Promise.reject(new Error("no constraints"));
  for (const constraints of choices) {
    attempt = attempt.catch(() => navigator.mediaDevices.getUserMedia(constraints));
  }
  return attempt;
}

/** A refusal's name (NotAllowedError, NotFoundError, ...) for the page's words. @param {any} err */
export function errorName(err) {
  return (err && (err.name || err.message)) || "error";
}

/** Stop every track of `stream` (the camera light goes off). @param {MediaStream | null} stream */
export function stopTracks(stream) {
  if (stream) {
    stream.getTracks().forEach((track) => track.stop());
  }
}
