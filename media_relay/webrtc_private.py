"""The one module that touches aiortc's, aioice's and asyncio's private names (the fence).

aiortc has no public API for what an encode-once relay and a cheap load generator need:
feeding a sender packets it did not encode, taking PLI/NACK/RTCP from a sender, tapping a
receiver before its decoder, writing RTP straight to the nominated ICE pair's socket. The
product therefore uses about forty private names of aiortc 1.16 / aioice 0.13 / asyncio;
every such use is a small named function here (``replace_keyframe_handler(sender, fn)``,
``nominated_pair(connection)``...), and no other module of ``media_relay``,
``classroom_client``, ``loadtests``, ``recording`` or ``signaling`` names one
(``tests/media_relay/test_webrtc_private.py`` checks both).

At import, :func:`verify` checks every name in :data:`PRIVATE_NAMES` against the installed
code, from its bytecode (no object is built, no source is needed):
- a *field* must be both stored and read by the owner's code (so a write of ours is seen:
  a write to a renamed or name-mangled attribute would silently create a dead one);
- a *method* must exist on the class;
- a *hook* (a method we replace on an instance or on the class) must exist and be looked
  up by attribute (``self._send_keyframe()``) in the code that calls it, so the
  replacement is what aiortc calls; the tests also drive each hook over a real pair of
  peer connections;
- a *global* must exist in its module and be looked up by name where it is called.
A miss raises :class:`WebRTCStackChanged` (an ImportError) naming every missing name and
the supported versions (:data:`SUPPORTED`, the same bounds as ``pyproject.toml``). Versions
outside the bounds whose names all check out only warn. How to upgrade aiortc:
docs/architecture.md, "The WebRTC stack".

Why one module of ~600 lines rather than several small ones: its job is to be the single
place a reviewer reads when aiortc/aioice change, and the single list :func:`verify`
checks; split by subject, the fence would again be names scattered over files.

Public aiortc API is used wherever it exists (``receiver.track.kind``,
``RTCDtlsTransport.state`` outside the hot path, ``getStats``); what is here has none.
"""

from __future__ import annotations

import dis
import importlib
import importlib.metadata
import inspect
import types
import warnings
from asyncio import base_events, selector_events
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from aioice.ice import Connection
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc import rtcrtpreceiver as _rtcrtpreceiver
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as _DtlsState

SUPPORTED = {"aiortc": (">=1.16", "<1.17"), "aioice": (">=0.13", "<0.14"), "av": (">=18.1", "<19")}
"""Versions this fence was written and tested against (pyproject.toml pins the same)."""


class WebRTCStackChanged(ImportError):
    """An aiortc/aioice/asyncio private name the product relies on is missing or unused."""


@dataclass(frozen=True)
class Private:
    """One private name. ``owner``: ``"module:Class"`` (or a class/module object, for
    tests); ``kind``: field, method, hook or global; ``where``: the code that must store and
    read a field (default: the owner); ``callers``: the code that must look a hook or
    global up by name (default: the owner)."""

    owner: Any
    name: str
    kind: str
    use: str
    where: tuple[Any, ...] = ()
    callers: tuple[Any, ...] = ()


_SENDER = "aiortc.rtcrtpsender:RTCRtpSender"
_RECEIVER = "aiortc.rtcrtpreceiver:RTCRtpReceiver"
_DTLS = "aiortc.rtcdtlstransport:RTCDtlsTransport"
_JITTER = "aiortc.jitterbuffer:JitterBuffer"
_DGRAM = "asyncio.selector_events:_SelectorDatagramTransport"
_SELECTOR = "asyncio.selector_events:_SelectorTransport"

PRIVATE_NAMES: tuple[Private, ...] = (
    # RTCRtpSender: a sender fed packets (relay), its RTCP taken over (batched send path)
    Private(_SENDER, "_ssrc", "field", "the media ssrc our RTP headers carry"),
    Private(_SENDER, "_rtx_ssrc", "field", "the RTX ssrc of retransmissions"),
    Private(_SENDER, "_enabled", "field", "nothing is written while the sender is disabled"),
    Private(_SENDER, "_RTCRtpSender__encoder", "field",
            "set to a PassthroughEncoder / an Opus encoder with FEC (REMB lands there)"),
    Private(_SENDER, "_RTCRtpSender__packet_count", "field", "sender report counters"),
    Private(_SENDER, "_RTCRtpSender__octet_count", "field", "sender report counters"),
    Private(_SENDER, "_RTCRtpSender__ntp_timestamp", "field", "sender report timestamps"),
    Private(_SENDER, "_RTCRtpSender__rtp_timestamp", "field", "sender report timestamps"),
    Private(_SENDER, "_RTCRtpSender__rtt", "field", "RTT aiortc computed from an RR"),
    Private(_SENDER, "_send_keyframe", "hook", "PLI/FIR -> our keyframe request"),
    Private(_SENDER, "_retransmit", "hook", "NACK -> served from our history"),
    Private(_SENDER, "_handle_rtcp_packet", "hook", "RTCP for the sender (RR, REMB) seen",
            callers=(_DTLS,)),
    # RTCDtlsTransport / RTCIceTransport / aioice: writing RTP to the nominated pair
    Private(_DTLS, "_state", "field", "connected or not, per packet (no string compare)"),
    Private(_DTLS, "_tx_srtp", "field", "the SRTP session that protects our RTP"),
    Private(_DTLS, "_send_rtp", "method", "aiortc's own send (TURN and non-UDP pairs)"),
    Private(_DTLS, "_RTCDtlsTransport__tx_bytes", "field", "transport stats stay right"),
    Private(_DTLS, "_RTCDtlsTransport__tx_packets", "field", "transport stats stay right"),
    Private("aiortc.rtcicetransport:RTCIceTransport", "_connection", "field",
            "the aioice Connection (no public accessor)"),
    Private("aioice.ice:Connection", "_nominated", "field", "the selected pair per component"),
    Private("aioice.ice:Connection", "_protocols", "field", "the host/relay sockets"),
    # RTCRtpReceiver: taps before the decoder, counting receivers, PLI on demand
    Private(_RECEIVER, "_enabled", "field", "a counting receiver honours disabling"),
    Private(_RECEIVER, "_handle_rtp_packet", "hook", "a counting receiver's packet handler",
            callers=(_DTLS,)),
    Private(_RECEIVER, "_RTCRtpReceiver__decoder_thread", "field", "tapped before start"),
    Private(_RECEIVER, "_RTCRtpReceiver__decoder_queue", "field", "the tap queue"),
    Private(_RECEIVER, "_RTCRtpReceiver__jitter_buffer", "field", "our jitter buffers"),
    Private(_RECEIVER, "_RTCRtpReceiver__decoder_error", "field", "set: a PLI goes out"),
    Private(_RECEIVER, "_RTCRtpReceiver__codecs", "field", "payload type -> codec"),
    Private(_RECEIVER, "_RTCRtpReceiver__kind", "field",
            "audio or video before negotiation (receiver.track is None until then)"),
    Private(_RECEIVER, "_handle_rtcp_packet", "hook", "sender reports seen (capture clock)",
            callers=(_DTLS,)),
    Private(_RECEIVER, "_RTCRtpReceiver__remote_streams", "field", "RR statistics per ssrc"),
    Private("aiortc.rtcrtpreceiver", "decoder_worker", "global",
            "replaced by a frame counter in load tests", callers=(_RECEIVER,)),
    Private("aiortc.rtcrtpreceiver:RemoteStreamTrack", "_queue", "field",
            "where the counting decoder leaves its counts",
            where=("aiortc.rtcrtpreceiver:RemoteStreamTrack", _RECEIVER)),
    # JitterBuffer (subclassed by JitterBufferBase below) and RtpPacket
    Private(_JITTER, "_capacity", "field", "ring size"),
    Private(_JITTER, "_origin", "field", "sequence number of the ring's first slot"),
    Private(_JITTER, "_packets", "field", "the ring"),
    Private(_JITTER, "_is_video", "field", "video or audio buffer"),
    Private(_JITTER, "_remove_frame", "hook", "our frame release (JitterBufferBase)"),
    Private("aiortc.rtp:RtpPacket", "_data", "field", "the depayloaded bytes of a packet",
            where=(_RECEIVER, _JITTER)),
    # codecs: packetizing once for every subscriber
    Private("aiortc.codecs.vpx:Vp8Encoder", "_packetize", "method", "VP8 RTP payloads"),
    Private("aiortc.codecs.h264:H264Encoder", "_split_bitstream", "method", "Annex-B NALs"),
    Private("aiortc.codecs.h264:H264Encoder", "_packetize", "method", "H.264 RTP payloads"),
    # asyncio: batched datagram reads (sockets.py), RTC port range (port_range.py)
    Private(_DGRAM, "_read_ready", "hook", "replaced by a batched reader",
            callers=(_DGRAM,)),
    Private(_SELECTOR, "_sock", "field", "read by the batched reader"),
    Private(_SELECTOR, "_protocol", "field", "read by the batched reader"),
    Private(_SELECTOR, "_conn_lost", "field", "read by the batched reader"),
    Private(_SELECTOR, "_fatal_error", "method", "called by the batched reader"),
    Private("asyncio.base_events:BaseEventLoop", "create_datagram_endpoint", "hook",
            "wrapped: host candidates bound in the RTC port range",
            callers=("aioice.ice:Connection",)),
)


# ---- verification (bytecode) -------------------------------------------------------------
def _resolve(target: Any) -> Any:
    if not isinstance(target, str):
        return target
    module_name, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, qualname.split(".")):
        obj = getattr(obj, part)
    return obj


def _codes(obj: Any) -> Iterator[types.CodeType]:
    """Every code object of a class's or module's functions (nested ones included)."""
    if isinstance(obj, types.ModuleType):
        members: Iterable[Any] = [v for v in vars(obj).values()
                                  if getattr(v, "__module__", None) == obj.__name__]
    elif isinstance(obj, type):
        members = list(vars(obj).values())
    else:
        members = [obj]
    for member in members:
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if isinstance(member, property):
            functions = [f for f in (member.fget, member.fset) if f is not None]
        elif isinstance(member, types.FunctionType):
            functions = [member]
        elif isinstance(member, type) and isinstance(obj, types.ModuleType):
            yield from _codes(member)
            continue
        else:
            continue
        for function in functions:
            stack = [function.__code__]
            while stack:
                code = stack.pop()
                yield code
                stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))


_LOADS = {"LOAD_ATTR", "LOAD_METHOD"}


_Uses = tuple[set[str], set[str], set[str], set[str]]


def _uses(obj: Any) -> _Uses:
    """Names in ``obj``'s code: attributes stored, attributes read, attributes read from a
    local object (``self.x``, ``recipient.x``: not ``SomeClass.x``), globals read."""
    stores: set[str] = set()
    loads: set[str] = set()
    dynamic: set[str] = set()
    globals_: set[str] = set()
    for code in _codes(obj):
        previous = None
        for ins in dis.get_instructions(code):
            if ins.opname == "STORE_ATTR":
                stores.add(ins.argval)
            elif ins.opname in _LOADS:
                loads.add(ins.argval)
                if previous is not None and previous.opname != "LOAD_GLOBAL":
                    dynamic.add(ins.argval)
            elif ins.opname == "LOAD_GLOBAL":
                globals_.add(ins.argval)
            if ins.opname not in ("CACHE", "EXTENDED_ARG", "PRECALL"):
                previous = ins
    return stores, loads, dynamic, globals_


def _problem(spec: Private, cache: dict[int, _Uses]) -> str | None:
    """Why ``spec`` does not hold on the installed code, or None."""
    def uses(target: Any) -> _Uses:
        obj = _resolve(target)
        if id(obj) not in cache:
            cache[id(obj)] = _uses(obj)
        return cache[id(obj)]

    try:
        owner = _resolve(spec.owner)
        if spec.kind == "field":
            where = spec.where or (spec.owner,)
            stored = any(spec.name in uses(w)[0] for w in where)
            read = any(spec.name in uses(w)[1] for w in where)
            if not (stored and read):
                return "not stored" if not stored else "stored but never read"
            return None
        if spec.kind == "global":
            if not callable(getattr(owner, spec.name, None)):
                return "missing"
            callers = spec.callers or (spec.owner,)
            if not all(spec.name in uses(c)[3] for c in callers):
                return "no longer called by name"
            return None
        static = inspect.getattr_static(owner, spec.name, None)
        if not (callable(static) or isinstance(static, (staticmethod, classmethod))):
            return "missing"
        if spec.kind == "hook":
            callers = spec.callers or (spec.owner,)
            if not all(spec.name in uses(c)[2] for c in callers):
                return "no longer looked up by attribute (a replacement would not be called)"
        return None
    except (ImportError, AttributeError) as exc:
        return f"cannot be found ({exc})"


def installed_versions() -> dict[str, str]:
    out = {}
    for name in SUPPORTED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def supported_text() -> str:
    return ", ".join(f"{name}{lo},{hi}" for name, (lo, hi) in SUPPORTED.items())


def _in_range(version: str, bounds: tuple[str, str]) -> bool:
    def key(v: str) -> tuple[int, ...]:
        parts = []
        for p in v.split("."):
            digits = "".join(ch for ch in p if ch.isdigit())
            parts.append(int(digits) if digits else 0)
        return tuple(parts)

    lo, hi = key(bounds[0].lstrip(">=")), key(bounds[1].lstrip("<"))
    return lo <= key(version) < hi


def missing(specs: Iterable[Private] = PRIVATE_NAMES) -> list[tuple[Private, str]]:
    """Each spec that does not hold on the installed code, with why."""
    cache: dict[int, _Uses] = {}
    out = []
    for spec in specs:
        problem = _problem(spec, cache)
        if problem is not None:
            out.append((spec, problem))
    return out


def _owner_name(owner: Any) -> str:
    if isinstance(owner, str):
        return owner.replace(":", ".")
    return f"{getattr(owner, '__module__', '')}.{getattr(owner, '__qualname__', owner)}"


def verify(specs: Iterable[Private] = PRIVATE_NAMES) -> None:
    """Raise :class:`WebRTCStackChanged` when a private name does not hold (see module doc);
    warn when the installed versions are outside :data:`SUPPORTED` but everything holds."""
    versions = installed_versions()
    found = ", ".join(f"{k} {v}" for k, v in versions.items())
    problems = missing(specs)
    if problems:
        lines = [f"  {_owner_name(s.owner)}.{s.name} ({s.kind}, {s.use}): {why}"
                 for s, why in problems]
        raise WebRTCStackChanged(
            "the aiortc/aioice/asyncio internals this product relies on changed.\n"
            f"Installed: {found}. Supported: {supported_text()} (pyproject.toml).\n"
            + "\n".join(lines)
            + "\nInstall the supported versions (pip install -e .), or port "
              "media_relay/webrtc_private.py (docs/architecture.md, 'The WebRTC stack').")
    outside = [k for k, v in versions.items() if not _in_range(v, SUPPORTED[k])]
    if outside:
        warnings.warn(f"untested WebRTC stack: {found}; supported: {supported_text()}",
                      RuntimeWarning, stacklevel=2)


# ---- RTCRtpSender -------------------------------------------------------------------------
def sender_ssrc(sender: RTCRtpSender) -> int:
    return sender._ssrc


def sender_rtx_ssrc(sender: RTCRtpSender) -> int:
    return sender._rtx_ssrc


def sender_enabled(sender: RTCRtpSender) -> bool:
    return sender._enabled


def set_sender_encoder(sender: RTCRtpSender, encoder: Any) -> None:
    """The encoder the sender uses (before it starts): a PassthroughEncoder for packets, or
    an encoder configured by us; REMB sets its ``target_bitrate``."""
    sender._RTCRtpSender__encoder = encoder  # type: ignore[attr-defined]


def replace_keyframe_handler(sender: RTCRtpSender, handler: Callable[[], None]) -> None:
    """PLI/FIR from the remote peer call ``handler()`` instead of flagging the sender's
    own encoder (which a sender fed packets does not have)."""
    sender._send_keyframe = handler  # type: ignore[method-assign]


def replace_retransmit(sender: RTCRtpSender, handler: Callable[[int], Any]) -> None:
    """Each NACKed sequence number is awaited as ``handler(sequence_number)``."""
    sender._retransmit = handler  # type: ignore[method-assign]


def replace_rtcp_handler(sender: RTCRtpSender, handler: Callable[[Any], Any]
                         ) -> Callable[[Any], Any]:
    """RTCP packets routed to the sender are awaited as ``handler(packet)``; returns
    aiortc's own handler (call it: RTT, stats, NACK, PLI and REMB handling stay aiortc's)."""
    original = sender._handle_rtcp_packet
    sender._handle_rtcp_packet = handler  # type: ignore[method-assign]
    return original


def record_sent(sender: RTCRtpSender, ntp: int, rtp_timestamp: int, packets: int,
                octets: int) -> None:
    """What ``RTCRtpSender._run_rtp`` keeps for its sender reports, for packets we wrote."""
    sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]
    sender._RTCRtpSender__packet_count += packets  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count += octets  # type: ignore[attr-defined]


def sender_rtt(sender: RTCRtpSender) -> float | None:
    """Round-trip time (s) aiortc computed from the last receiver report (getStats has it
    too, as ``roundTripTime``, but builds a whole report to say so)."""
    return sender._RTCRtpSender__rtt  # type: ignore[attr-defined]


# ---- DTLS / ICE ---------------------------------------------------------------------------
def dtls_connected(dtls: RTCDtlsTransport) -> bool:
    """``dtls.state == "connected"`` without building the string (hot path)."""
    return dtls._state is _DtlsState.CONNECTED


def srtp_protect(dtls: RTCDtlsTransport) -> Callable[[bytes], bytes]:
    """The connected transport's SRTP ``protect`` for outgoing RTP."""
    return dtls._tx_srtp.protect


def send_rtp(dtls: RTCDtlsTransport, data: bytes) -> Any:
    """aiortc's own (coroutine) path: protect, count and send one RTP/RTCP packet."""
    return dtls._send_rtp(data)


def count_transport_sent(dtls: RTCDtlsTransport, packets: int, octets: int) -> None:
    """Keep the transport's getStats ``packetsSent``/``bytesSent`` right for our writes."""
    dtls._RTCDtlsTransport__tx_packets += packets  # type: ignore[attr-defined]
    dtls._RTCDtlsTransport__tx_bytes += octets  # type: ignore[attr-defined]


def ice_connection(dtls: RTCDtlsTransport | None) -> Connection | None:
    """The aioice ``Connection`` under a DTLS transport (None without one)."""
    ice = getattr(dtls, "transport", None)
    return getattr(ice, "_connection", None) if ice is not None else None


def nominated_pair(connection: Connection | None, component: int = 1) -> Any:
    """The nominated ``CandidatePair`` of ``component`` (``.protocol``, ``.remote_addr``,
    ``.local_candidate``, ``.remote_candidate``), or None before one."""
    return connection._nominated.get(component) if connection is not None else None


def ice_protocols(connection: Connection | None) -> list[Any]:
    """The connection's ``StunProtocol`` objects (one per gathered socket)."""
    return list(connection._protocols) if connection is not None else []


# ---- RTCRtpReceiver -----------------------------------------------------------------------
def receiver_enabled(receiver: RTCRtpReceiver) -> bool:
    return receiver._enabled


def replace_rtp_handler(receiver: RTCRtpReceiver, handler: Callable[[Any, int], Any]
                        ) -> Callable[[Any, int], Any]:
    """RTP packets routed to the receiver are awaited as ``handler(packet, arrival_ms)``
    (instead of NACK, jitter buffer and decoder); returns aiortc's own handler."""
    original = receiver._handle_rtp_packet
    receiver._handle_rtp_packet = handler  # type: ignore[method-assign]
    return original


def receiver_kind(receiver: RTCRtpReceiver) -> str:
    """``"audio"`` or ``"video"``, also before negotiation (``receiver.track`` is None
    until the remote description is applied)."""
    return receiver._RTCRtpReceiver__kind  # type: ignore[attr-defined]


def replace_receiver_rtcp_handler(receiver: RTCRtpReceiver, handler: Callable[[Any], Any]
                                  ) -> Callable[[Any], Any]:
    """RTCP packets routed to the receiver (sender reports, BYE) are awaited as
    ``handler(packet)``; returns aiortc's own handler (call it)."""
    original = receiver._handle_rtcp_packet
    receiver._handle_rtcp_packet = handler  # type: ignore[method-assign]
    return original


def receiver_started(receiver: RTCRtpReceiver) -> bool:
    """Its decoder thread runs (``receive()`` was called): too late to tap it."""
    return receiver._RTCRtpReceiver__decoder_thread is not None  # type: ignore[attr-defined]


def replace_decoder_queue(receiver: RTCRtpReceiver, decoder_queue: Any) -> None:
    """The ``queue.Queue`` of ``(codec, JitterFrame)`` the decoder thread will read
    (before ``receive()``); its ``put`` runs in the event loop thread."""
    receiver._RTCRtpReceiver__decoder_queue = decoder_queue  # type: ignore[attr-defined]


def replace_jitter_buffer(receiver: RTCRtpReceiver, buffer: Any) -> None:
    """The receiver's jitter buffer (``add(packet) -> (pli, frame)``, ``capacity``)."""
    receiver._RTCRtpReceiver__jitter_buffer = buffer  # type: ignore[attr-defined]


def ask_for_keyframe(receiver: RTCRtpReceiver) -> None:
    """The receiver sends a PLI with its next RTCP feedback (as after a decoder error)."""
    receiver._RTCRtpReceiver__decoder_error.set()  # type: ignore[attr-defined]


def receiver_codecs(receiver: RTCRtpReceiver) -> dict[int, Any]:
    """Payload type -> codec (filled in place by ``receive()``)."""
    return receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]


def receiver_streams(receiver: RTCRtpReceiver) -> dict[int, Any]:
    """Ssrc -> ``StreamStatistics`` behind the receiver reports (filled in place)."""
    return receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]


def remote_track_queue(track: Any) -> Any:
    """The ``asyncio.Queue`` a received track's decoder thread fills (None if not one)."""
    return getattr(track, "_queue", None)


_original_decoder_worker = _rtcrtpreceiver.decoder_worker


def replace_decoder_worker(worker: Callable[..., None] | None) -> None:
    """Receivers started from now on run ``worker(loop, input_q, output_q, decoder_error)``
    as their decoder thread (None: aiortc's own)."""
    _rtcrtpreceiver.decoder_worker = worker or _original_decoder_worker


def decoder_worker() -> Callable[..., None]:
    return _rtcrtpreceiver.decoder_worker


# ---- JitterBuffer and RtpPacket -----------------------------------------------------------
packet_data: Callable[[Any], bytes] = attrgetter("_data")
"""The depayloaded bytes of a received ``RtpPacket`` (what a frame is joined from)."""


class JitterBufferBase(JitterBuffer):
    """aiortc's JitterBuffer with its ring under public names, for our buffers.

    ``add()`` (aiortc's) calls :meth:`release_frame` after storing each packet; override it
    (aiortc's release is :meth:`aiortc_release_frame`).
    """

    @property
    def origin(self) -> int | None:
        """Sequence number of the oldest slot held, None when empty and unanchored."""
        return self._origin

    @origin.setter
    def origin(self, value: int | None) -> None:
        self._origin = value

    @property
    def slots(self) -> list[Any]:
        """The ring (``capacity`` slots, indexed ``sequence % capacity``), mutable."""
        return self._packets

    @property
    def is_video(self) -> bool:
        return self._is_video

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        return self.release_frame(sequence_number)

    def release_frame(self, sequence_number: int) -> JitterFrame | None:
        return JitterBuffer._remove_frame(self, sequence_number)

    def aiortc_release_frame(self, sequence_number: int) -> JitterFrame | None:
        return JitterBuffer._remove_frame(self, sequence_number)


# ---- codecs -------------------------------------------------------------------------------
def vp8_payloads(data: bytes, picture_id: int) -> list[bytes]:
    """RTP payloads of one VP8 frame (aiortc's packetizer, descriptor with ``picture_id``)."""
    return Vp8Encoder._packetize(data, picture_id)


def h264_nal_units(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex-B access unit."""
    return H264Encoder._split_bitstream(data)


def h264_payloads(nal_units: Iterable[bytes]) -> list[bytes]:
    """RTP payloads of NAL units (single, STAP-A, FU-A, as aiortc packs them)."""
    return H264Encoder._packetize(nal_units)


# ---- asyncio ------------------------------------------------------------------------------
_DatagramTransport = selector_events._SelectorDatagramTransport
original_datagram_read_ready = _DatagramTransport._read_ready
"""asyncio's own reader (one datagram per readiness event)."""


def batched_datagram_reader(batch: int) -> Callable[[Any], None]:
    """A ``_SelectorDatagramTransport._read_ready`` that reads up to ``batch`` datagrams
    per readiness event (what asyncio's does once, with its error handling)."""
    def read_ready(self: Any) -> None:
        for _ in range(batch):
            if self._conn_lost:
                return
            try:
                data, addr = self._sock.recvfrom(self.max_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # noqa: BLE001 - asyncio's own handling, kept
                self._fatal_error(exc, "Fatal read error on datagram transport")
                return
            self._protocol.datagram_received(data, addr)

    return read_ready


_READER_NAMES = ("_conn_lost", "_sock", "recvfrom", "max_size", "_protocol",
                 "datagram_received", "error_received", "_fatal_error")
"""What asyncio's own reader uses (3.11-3.13): the batched one relies on the same."""


def datagram_reader_compatible() -> bool:
    """asyncio's reader still reads the names the batched one uses."""
    return set(_READER_NAMES) <= set(original_datagram_read_ready.__code__.co_names)


def datagram_read_ready() -> Callable[[Any], None]:
    return _DatagramTransport._read_ready


def replace_datagram_read_ready(reader: Callable[[Any], None] | None) -> None:
    """Datagram transports (process-wide) read with ``reader`` (None: asyncio's own)."""
    _DatagramTransport._read_ready = (  # type: ignore[method-assign]
        reader or original_datagram_read_ready)


original_create_datagram_endpoint = base_events.BaseEventLoop.create_datagram_endpoint


def create_datagram_endpoint_compatible() -> bool:
    params = inspect.signature(original_create_datagram_endpoint).parameters
    return {"local_addr", "remote_addr", "sock"} <= set(params)


def replace_create_datagram_endpoint(wrapper: Callable[..., Any] | None) -> None:
    """Every selector event loop's ``create_datagram_endpoint`` (aioice binds its host
    sockets through it) becomes ``wrapper`` (None: asyncio's own)."""
    base_events.BaseEventLoop.create_datagram_endpoint = (  # type: ignore[method-assign]
        wrapper or original_create_datagram_endpoint)


def create_datagram_endpoint() -> Callable[..., Any]:
    return base_events.BaseEventLoop.create_datagram_endpoint


verify()
