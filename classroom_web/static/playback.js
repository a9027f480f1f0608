// @ts-check
/* Playback on the classroom TV: the teacher (camera and voice), the teacher's share and the
 * classroom on stage, each on its own element. With sound first; if the browser refuses
 * (autoplay policy), play muted so the picture is there, and show the join button for the
 * sound. Once refused, the page does not try to unmute by itself again (Chrome pauses an
 * element whose unmuting it refuses); a watchdog plays again what should play but is paused.
 */

export class Playback {
  /**
   * @param {{teacher: HTMLVideoElement, share: HTMLVideoElement, stage: HTMLVideoElement}} els
   * @param {() => void} render
   */
  constructor(els, render) {
    this.teacher = els.teacher;
    this.share = els.share;
    this.stage = els.stage;
    this.render = render;
    this.autoplayBlocked = false;
    // Elements that play sound: the teacher (camera + voice) and the classroom on stage.
    this.soundPlayers = [this.teacher, this.stage];
  }

  /**
   * Put `stream` on `el` (tracks added to the stream later join it in place) and play.
   * @param {HTMLVideoElement} el @param {MediaStream} stream
   */
  show(el, stream) {
    if (el.srcObject !== stream) {
      el.srcObject = stream;
      this.tryPlay();
    }
  }

  tryPlay() {
    this.soundPlayers.forEach((el) => this._tryPlay(el));
    const share = this.share;
    if (share.srcObject && share.paused) {
      share.muted = true; // the share has no sound
      share.play().catch(() => {});
    }
  }

  /** @param {HTMLVideoElement} el */
  _tryPlay(el) {
    if (!el.srcObject) {
      return;
    }
    if (this.autoplayBlocked) {
      el.muted = true;
      el.play().catch(() => {});
      return;
    }
    el.muted = false;
    const p = el.play();
    if (!p || !p.then) {
      return;
    }
    p.then(
      () => this.render(),
      (err) => {
        if (err && err.name === "NotAllowedError") {
          this.autoplayBlocked = true;
          this.soundPlayers.forEach((other) => {
            other.muted = true;
            if (other.srcObject) {
              other.play().catch(() => {});
            }
          });
          this.render();
        }
        // AbortError (a new source or a pause came first): the watchdog tries again
      }
    );
  }

  /** Once a second: a picture that should play but is paused gets another play(). */
  keepPlaying() {
    const paused = [this.teacher, this.stage, this.share].some((el) => el.srcObject && el.paused);
    if (paused) {
      this.tryPlay();
    }
  }

  /** The join button: a person's tap lets the page play sound. */
  join() {
    this.autoplayBlocked = false;
    this.soundPlayers.forEach((el) => {
      if (!el.srcObject) {
        return;
      }
      el.muted = false;
      el.play().then(
        () => this.render(),
        (err) => {
          if (err && err.name === "NotAllowedError") {
            this.autoplayBlocked = true; // still blocked: the button stays
            el.muted = true;
            el.play().catch(() => {});
          }
          this.render();
        }
      );
    });
  }

  /** The lesson ended: nothing plays. */
  clear() {
    this.teacher.srcObject = null;
    this.share.srcObject = null;
    this.stage.srcObject = null;
  }

  /** Double click on the teacher: full screen on and off. */
  fullscreenOnDoubleClick() {
    this.teacher.addEventListener("dblclick", () => {
      if (document.fullscreenElement) {
        document.exitFullscreen().catch(() => {});
      } else if (document.documentElement.requestFullscreen) {
        document.documentElement.requestFullscreen().catch(() => {});
      }
    });
  }
}
