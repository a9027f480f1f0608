"""The H.264 rendition's encoder and packetizer, for classrooms that decode only H.264.

Old TV boxes and some set-top browsers offer only H.264 (constrained baseline,
``packetization-mode=1``). A tier is then also encoded with libx264 (through PyAV) as
constrained baseline level 3.1 (``42e01f``: up to 1280x720 at 30 fps), realtime, no
B-frames, one slice, keyframes (IDR, with SPS/PPS in band) only when the rendition forces
them, and packetized once per frame for every subscriber (aiortc's own H.264 RTP
packetizer: single NAL units, STAP-A, FU-A). Called from a rendition's encoder thread only.
"""

from __future__ import annotations

from typing import Any

import av

from .packets import VIDEO_TIME_BASE
from .webrtc_private import h264_nal_units, h264_payloads

CODEC = "H264"
"""The codec name used by renditions, sinks (``video_codec``) and offers."""
_NAL_IDR = 5


def open_encoder(width: int, height: int, fps: int, bitrate: int, threads: int) -> Any:
    """A libx264 context for one tier: constrained baseline 3.1, constant-ish rate."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width = width
    codec.height = height
    codec.pix_fmt = "yuv420p"
    codec.time_base = VIDEO_TIME_BASE
    codec.framerate = fps
    codec.bit_rate = bitrate
    codec.gop_size = 3000  # keyframes are forced by the rendition
    codec.max_b_frames = 0
    codec.thread_count = threads
    codec.options = {
        "profile": "baseline",
        "level": "3.1",
        "preset": "ultrafast",
        "tune": "zerolatency",
        "forced-idr": "1",  # a forced keyframe is an IDR (a decoder can start there)
        "maxrate": str(bitrate),
        "bufsize": str(bitrate // 2),  # ~0.5 s of VBV: keyframes stay a modest burst
        "x264-params": "scenecut=0:repeat-headers=1:slices=1:sliced-threads=0",
    }
    return codec


def packetize(data: bytes) -> tuple[list[bytes], bool]:
    """RTP payloads of one Annex-B access unit, and whether it holds an IDR picture."""
    nals = list(h264_nal_units(data))
    keyframe = any(nal and nal[0] & 0x1F == _NAL_IDR for nal in nals)
    return h264_payloads(nals), keyframe
