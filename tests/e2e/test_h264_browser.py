"""An H.264-only classroom in Chromium: codec preferences holding only H.264 (constrained
baseline 42e01f, packetization-mode 1, as an old TV box offers) decode the teacher's video,
on its tier and after the low-bandwidth button moves it to ``low``."""

from __future__ import annotations

import pytest

from tests.e2e.pages import (
    RECORD_PEER_CONNECTIONS,
    missing_browser_reason,
    press,
    wait_media_rising,
    wait_until,
)

_reason = missing_browser_reason()
if _reason:
    pytest.skip(f"browser tests skipped: {_reason}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def server_backend() -> list[str]:
    """The codec path does not touch the store: the memory backend only (one run)."""
    return []

# A TV box that decodes only H.264: the receiver's video capabilities hold only H.264
# 42e01f pm=1 (+RTX), so the page's own VP8 preference finds nothing to prefer, and every
# receive-only video transceiver's codec preferences are set to that; the page's peer
# connections are kept for getStats().
H264_ONLY = RECORD_PEER_CONNECTIONS + """
(() => {
  const nativeCaps = RTCRtpReceiver.getCapabilities.bind(RTCRtpReceiver);
  const keep = (c) => (c.mimeType === "video/H264"
      && /profile-level-id=42e01f/.test(c.sdpFmtpLine || "")
      && /packetization-mode=1/.test(c.sdpFmtpLine || "")) || c.mimeType === "video/rtx";
  RTCRtpReceiver.getCapabilities = function (kind) {
    const caps = nativeCaps(kind);
    if (kind === "video" && caps) caps.codecs = caps.codecs.filter(keep);
    return caps;
  };
  const proto = window.RTCPeerConnection.prototype;
  const add = proto.addTransceiver;
  proto.addTransceiver = function (what, init) {
    const t = add.call(this, what, init);
    if (what === "video" && init && init.direction === "recvonly") {
      t.setCodecPreferences(RTCRtpReceiver.getCapabilities("video").codecs);
    }
    return t;
  };
})();
"""

INBOUND_VIDEO = """
async () => {
  const out = [];
  for (const pc of window.__pcs) {
    if (pc.connectionState !== "connected") continue;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded > 0) {
        const codec = report.get(s.codecId);
        out.push({mime: codec ? codec.mimeType : null, fmtp: codec ? codec.sdpFmtpLine : null,
                  frames: s.framesDecoded, keyframes: s.keyFramesDecoded,
                  width: s.frameWidth, height: s.frameHeight});
      }
    });
  }
  return out;
}
"""


def test_h264_only_classroom_decodes_the_teacher_on_its_tier_and_after_a_switch(
        server, open_page):
    lesson = "e2e-h264"
    teacher = open_page(server.page_url("teach", lesson, server.token(
        "teacher", lesson, name="王老师"), "?res=360"))
    room = open_page(server.page_url("class", lesson, server.token(
        "classroom", lesson, name="电视机", school="村小")), init_script=H264_ONLY)
    has_h264 = room.evaluate("""() => RTCRtpReceiver.getCapabilities("video").codecs.some(
        (c) => c.mimeType === "video/H264")""")
    if not has_h264:
        pytest.skip("this Chromium has no H.264 decoder for WebRTC (42e01f)")
    press(teacher, "start-lesson")
    now = wait_media_rising(room, timeout=40)
    assert now["connectionState"] == "connected" and now["videoTier"] == "high"

    def camera() -> dict | None:
        lines = room.evaluate(INBOUND_VIDEO)
        return lines[0] if lines else None

    first = wait_until(camera, 10, "no decoded inbound video in getStats")
    assert first["mime"] == "video/H264", first
    assert "packetization-mode=1" in first["fmtp"] and "42e01f" in first["fmtp"], first
    assert first["keyframes"] >= 1 and (first["width"], first["height"]) == (640, 360)

    # the low-bandwidth button: low (320x180) in H.264, from a keyframe, still decoding
    press(room, "low-bandwidth")
    low = wait_until(lambda: (c := camera()) and c["width"] == 320 and c, 15,
                     "never decoded the low tier")
    assert low["mime"] == "video/H264" and low["keyframes"] > first["keyframes"]
    wait_until(lambda: (c := camera()) and c["frames"] >= low["frames"] + 20 and c, 10,
               "low tier did not keep decoding")
