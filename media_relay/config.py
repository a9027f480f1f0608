"""Relay configuration and the one error type the relay raises to its callers."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from .ladder_spec import DEFAULT_LADDER, Ladder
from .rate_control import ControllerConfig


def default_controller() -> ControllerConfig:
    """Probing with padding (RTX copies of the newest packets up to the next tier's rate,
    media_relay.rtpout): a failed probe is invisible to the classroom, so the backoff stays
    short (hold_max 10 s) and a link that recovers is back on high within ~20 s."""
    return ControllerConfig(probe_with_media=False)


@dataclass
class RelayConfig:
    """Everything the relay can be tuned with; every field has a working default.

    ``ice_servers`` is empty by default: no public STUN server is ever contacted unless
    configured (host candidates only).
    """

    ice_servers: list[dict] = field(default_factory=list)
    """``[{"urls": "stun:...", "username": ..., "credential": ...}]`` (STUN/TURN)."""
    ladder: Ladder = DEFAULT_LADDER
    """Tiers (sizes, frame rates, bitrates); each is encoded once, while in use."""
    controller: ControllerConfig = field(default_factory=default_controller)
    """Per-subscriber rate controller settings (its ``ladder`` is replaced by ``ladder``)."""
    rate_control: bool = True
    """False: every subscriber stays on the top tier (caps and the button still apply)."""
    rate_control_interval: float = 0.5
    """Seconds between rate-controller ticks (bytes sent, probes)."""
    video_bitrate: int = 1_000_000
    """Top tier's rate when the source is at most 480 lines tall, if lower than the
    ladder's (bit/s)."""
    video_bitrate_hd: int = 1_500_000
    """Unused since the ladder (kept for callers that set it): the ladder's top rate applies."""
    max_width: int = 1280
    max_height: int = 720
    keyframe_interval: float = 2.0
    """Seconds between periodic keyframes (bounds recovery after loss)."""
    keyframe_min_gap: float = 0.3
    """Requested keyframes (join, PLI/FIR, overflow) are at least this far apart."""
    encoder_cpu_used: int = 8
    """libvpx speed (realtime deadline): higher is faster and coarser."""
    max_intra_rate: int = 300
    """libvpx cap on a keyframe's size, in % of an average frame (smaller bursts)."""
    encoder_threads: int = 0
    """libvpx threads per rendition; 0 is 1 (VP8's threads spin-wait on busy cores)."""
    video_queue_frames: int = 20
    """Per-subscriber video queue bound (frames); overflow flushes to the next keyframe."""
    audio_queue_packets: int = 25
    """Per-subscriber audio queue bound (20 ms packets); overflow drops the oldest."""
    batched_send: bool = True
    """Write each shared packet to every subscriber in one pass (``rtpout.RtpStream``).
    False: one aiortc sender task per subscriber reads its ``PacketTrack`` queue (the
    queue bounds above apply only then)."""
    gil_switch_interval: float | None = 0.001
    """Lower the interpreter's GIL switch interval (``sys.setswitchinterval``, process-wide)
    to this many seconds when a Relay is created; None leaves it alone. The media thread
    re-takes the GIL several times a frame (after decode, encode, ...): with the default
    5 ms, a busy event loop (fan-out, RTCP) can hold a finished frame 5 ms each time; on a
    loaded 2-core machine this doubled the p95 forward latency of video at 50 subscribers."""
    batched_reads: bool = True
    """Read up to ``sockets.READ_BATCH`` datagrams per socket event (process-wide, see
    media_relay/sockets.py): asyncio reads one, and a busy loop then loses packets."""
    socket_receive_buffer: int = 512 * 1024
    """Receive buffer asked for each peer socket (bytes; the kernel caps it at
    ``net.core.rmem_max``): about a second of a 2 Mbit/s camera, so a keyframe burst
    survives a busy loop; larger would only queue stale media (and STUN) behind it."""
    busy_lag: float = 0.05
    """A loop wake-up this late (s) marks the node busy (node_load.NodeLoad) ..."""
    busy_hold: float = 3.0
    """... for this long: RTT growth is then not taken as a subscriber's congestion."""
    media_timeout: float = 2.0
    """No media from the publisher for this long reports ``on_publisher(lesson, False)``."""
    connect_timeout: float = 30.0
    """A peer that is not connected this long after its answer is closed."""
    max_sdp_bytes: int = 65536
    on_air_gate: bool = False
    """True (signaling sets it): a classroom subscriber gets media only while its lesson is
    on air (``Relay.set_on_air``: the lesson is ``live``); False: always (relay tests, load
    tests without signaling). The teacher's grid and the recorder are never gated."""
    # ---- two-way lesson (issue 7) ----
    uplink_max_bitrate: int = 400_000
    """A classroom's uplink cap, video + audio (bit/s): written into the answer (b=AS/TIAS)
    and enforced on the measured rate."""
    uplink_audio_bitrate: int = 40_000
    """The part of ``uplink_max_bitrate`` the answer gives the audio m-line."""
    uplink_over_factor: float = 1.5
    """An uplink measured above this many times its cap ..."""
    uplink_over_seconds: float = 5.0
    """... for this long is reported (``uplink_over_cap``) and its video stops being
    forwarded until it is back under the cap."""
    grid_slots_max: int = 16
    """Most video m-lines a teacher's grid offer may carry."""
    rtc_ports: tuple[int, int] | None = None
    """``(low, high)``: every media socket (host candidate) is bound to a UDP port in this
    range (port_range.py, ``classroom serve --rtc-ports``); None: ephemeral ports."""

    def rtc_configuration(self) -> RTCConfiguration:
        servers = []
        for server in self.ice_servers:
            servers.append(
                RTCIceServer(
                    urls=server["urls"],
                    username=server.get("username"),
                    credential=server.get("credential"),
                )
            )
        # max-bundle: with aiortc's default (balanced) a second m-line of a kind that is
        # not the offer's first kind keeps a transport of its own that BUNDLE never replaces
        # (it never connects): e.g. a subscriber's stage audio after the teacher's audio
        return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class RelayError(Exception):
    """An offer or candidate the relay refuses, or media it could not set up.

    ``reason`` is ``"bad_sdp"`` (offer unparsable, not an offer, wrong media or codec, bad
    candidate), ``"too_many_tracks"`` (an uplink offering more than 1 video + 1 audio),
    ``"not_found"`` (no such uplink or grid), ``"bad_request"`` (an argument of the wrong
    type) or ``"media_failed"`` (the peer connection
    could not be set up).
    """

    BAD_SDP = "bad_sdp"
    MEDIA_FAILED = "media_failed"
    TOO_MANY_TRACKS = "too_many_tracks"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message
