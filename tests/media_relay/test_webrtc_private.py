"""The WebRTC stack fence (media_relay/webrtc_private.py): every private aiortc/aioice/asyncio
name holds on the installed versions, a missing one fails with the supported versions, the
pins match pyproject.toml, nothing outside the fence names one, and the replaced hooks are
what aiortc really calls (a real pair of peer connections)."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import importlib
import pkgutil
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import aioice
import aiortc
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

from classroom_client.media import SyntheticVideoTrack
from media_relay import webrtc_private as private
from media_relay.ingress import install_tap

ROOT = Path(__file__).resolve().parents[2]

# Every private name the product uses, by owner (the fence's list must be exactly this: a
# new private name is added here and in webrtc_private.PRIVATE_NAMES, deliberately).
EXPECTED = {
    "RTCRtpSender": {"_ssrc", "_rtx_ssrc", "_enabled", "_RTCRtpSender__encoder",
                     "_RTCRtpSender__packet_count", "_RTCRtpSender__octet_count",
                     "_RTCRtpSender__ntp_timestamp", "_RTCRtpSender__rtp_timestamp",
                     "_RTCRtpSender__rtt", "_send_keyframe", "_retransmit",
                     "_handle_rtcp_packet"},
    "RTCDtlsTransport": {"_state", "_tx_srtp", "_send_rtp", "_RTCDtlsTransport__tx_bytes",
                         "_RTCDtlsTransport__tx_packets"},
    "RTCIceTransport": {"_connection"},
    "Connection": {"_nominated", "_protocols"},
    "RTCRtpReceiver": {"_enabled", "_handle_rtp_packet", "_handle_rtcp_packet",
                       "_RTCRtpReceiver__decoder_thread", "_RTCRtpReceiver__decoder_queue",
                       "_RTCRtpReceiver__jitter_buffer", "_RTCRtpReceiver__decoder_error",
                       "_RTCRtpReceiver__codecs", "_RTCRtpReceiver__remote_streams",
                       "_RTCRtpReceiver__kind"},
    "aiortc.rtcrtpreceiver": {"decoder_worker"},
    "RemoteStreamTrack": {"_queue"},
    "JitterBuffer": {"_capacity", "_origin", "_packets", "_is_video", "_remove_frame"},
    "RtpPacket": {"_data"},
    "Vp8Encoder": {"_packetize"},
    "H264Encoder": {"_split_bitstream", "_packetize"},
    "_SelectorDatagramTransport": {"_read_ready"},
    "_SelectorTransport": {"_sock", "_protocol", "_conn_lost", "_fatal_error"},
    "BaseEventLoop": {"create_datagram_endpoint"},
}


def _owner_key(spec: private.Private) -> str:
    module, _, qualname = spec.owner.partition(":")
    return qualname or module


def test_the_fence_lists_exactly_the_expected_names() -> None:
    listed: dict[str, set[str]] = {}
    for spec in private.PRIVATE_NAMES:
        listed.setdefault(_owner_key(spec), set()).add(spec.name)
    assert listed == EXPECTED


@pytest.mark.parametrize("spec", private.PRIVATE_NAMES,
                         ids=lambda s: f"{_owner_key(s)}.{s.name}")
def test_each_private_name_holds_on_the_installed_versions(spec: private.Private) -> None:
    assert private.missing([spec]) == []


def test_installed_versions_are_the_supported_ones_and_pyproject_pins_them() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for name, (low, high) in private.SUPPORTED.items():
        assert f"{name}{low},{high}" in deps, (name, deps)
        version = private.installed_versions()[name]
        assert private._in_range(version, (low, high)), (name, version)
    assert private._in_range("1.16.9", private.SUPPORTED["aiortc"])
    assert not private._in_range("1.17.0", private.SUPPORTED["aiortc"])
    assert not private._in_range("1.15.2", private.SUPPORTED["aiortc"])


def _sender_copy(**drop_or_add):
    """A copy of RTCRtpSender's namespace (the live class is never changed)."""
    namespace = {k: v for k, v in vars(RTCRtpSender).items()
                 if k not in ("__dict__", "__weakref__")}
    for key, value in drop_or_add.items():
        if value is None:
            namespace.pop(key, None)
        else:
            namespace[key] = value
    return type("RTCRtpSender", (), namespace)


def _spec(name: str) -> private.Private:
    return next(s for s in private.PRIVATE_NAMES
                if s.name == name and s.owner.endswith(":RTCRtpSender"))


def test_a_missing_method_fails_naming_the_supported_versions() -> None:
    copy = _sender_copy(_send_keyframe=None)
    spec = dataclasses.replace(_spec("_send_keyframe"), owner=copy)
    with pytest.raises(private.WebRTCStackChanged) as info:
        private.verify([spec])
    text = str(info.value)
    assert "RTCRtpSender._send_keyframe (hook" in text and ": missing" in text
    for needed in ("aiortc>=1.16,<1.17", "aioice>=0.13,<0.14", "av>=18.1,<19",
                   f"aiortc {aiortc.__version__}", "pyproject.toml",
                   "docs/architecture.md"):
        assert needed in text, needed
    assert isinstance(info.value, ImportError)


def test_a_renamed_field_would_be_a_dead_write_and_fails() -> None:
    # aiortc renames its counter: our write to the old mangled name would create a dead
    # attribute, so the field must be both stored and read by aiortc's code
    def __init__(self):  # noqa: N807
        self._RTCRtpSender__packets_sent = 0

    def _run_rtcp(self):
        return self._RTCRtpSender__packets_sent

    copy = _sender_copy(__init__=__init__, _run_rtcp=_run_rtcp, _run_rtp=None, getStats=None,
                        _handle_rtcp_packet=None, _next_encoded_frame=None)
    spec = dataclasses.replace(_spec("_RTCRtpSender__packet_count"), owner=copy)
    problems = private.missing([spec])
    assert [why for _, why in problems] == ["not stored"]
    with pytest.raises(private.WebRTCStackChanged, match="_RTCRtpSender__packet_count"):
        private.verify([spec])


def test_a_hook_aiortc_no_longer_looks_up_fails() -> None:
    # _send_keyframe still exists but RTCP handling stopped calling it by attribute:
    # replacing it on an instance would change nothing
    def _handle_rtcp_packet(self, packet):
        RTCRtpSender._send_keyframe(self)

    copy = _sender_copy(_handle_rtcp_packet=_handle_rtcp_packet)
    spec = dataclasses.replace(_spec("_send_keyframe"), owner=copy)
    assert private.missing([spec])[0][1].startswith("no longer looked up by attribute")


def test_the_import_fails_with_the_message_when_a_name_is_gone() -> None:
    # a throwaway interpreter: aiortc's class is changed there, never in this process
    code = ("import aiortc.rtcrtpsender as s; del s.RTCRtpSender._retransmit\n"
            "import media_relay.webrtc_private\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "WebRTCStackChanged" in done.stderr
    assert "RTCRtpSender._retransmit (hook, NACK -> served from our history): missing" in \
        done.stderr
    assert "Supported: aiortc>=1.16,<1.17" in done.stderr


# ---- nothing outside the fence names a private aiortc/aioice/asyncio name ----------------
PACKAGES = ("media_relay", "classroom_client", "loadtests", "recording", "signaling")
FENCE = ROOT / "media_relay" / "webrtc_private.py"
_MANGLED = re.compile(r"^_(RTC|Rtp|Rtcp|Jitter|Stun|Connection|Candidate|Selector|Base)\w*__\w+$")


def _third_party_private_names() -> set[str]:
    """Every ``_name`` aiortc, aioice and asyncio's event loop/transports store, read or
    define (and the name-mangled ``_Class__name`` forms)."""
    names: set[str] = set()
    modules = [importlib.import_module(m.name) for pkg in (aiortc, aioice)
               for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
               if ".contrib" not in m.name]
    modules += [aiortc, aioice, importlib.import_module("asyncio.selector_events"),
                importlib.import_module("asyncio.base_events")]
    for module in modules:
        stores, loads, _, _ = private._uses(module)
        names |= stores | loads
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__:
                names |= set(vars(value))
    return {n for n in names if n.startswith("_") and not n.endswith("__")}


def _python_files() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py")) if p != FENCE]


def _own_names(trees: dict[Path, ast.AST]) -> set[str]:
    """Private names our own code defines (attributes it stores, functions, classes)."""
    own: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                    isinstance(node.value, ast.Name) and node.value.id == "self":
                own.add(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
    return own


_THIRD_PARTY = ("aiortc", "aioice", "asyncio")


def _subclass_uses(path: Path, tree: ast.AST) -> list[str]:
    """``self._x`` / ``def _x`` in our subclasses of aiortc/aioice/asyncio classes (also via
    the fence's JitterBufferBase), where ``_x`` belongs to the third-party base."""
    imported: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (
                node.module.split(".")[0] in _THIRD_PARTY or "webrtc_private" in node.module):
            for alias in node.names:
                module = importlib.import_module(node.module)
                imported[alias.asname or alias.name] = getattr(module, alias.name, None)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [imported.get(b.id) for b in node.bases if isinstance(b, ast.Name)]
        names: set[str] = set()
        for base in bases:
            for cls in getattr(base, "__mro__", ()):
                if cls.__module__.split(".")[0] in _THIRD_PARTY:
                    stores, loads, _, _ = private._uses(cls)
                    names |= {n for n in stores | loads | set(vars(cls))
                              if n.startswith("_") and not n.endswith("__")}
        for inner in ast.walk(node):
            name = None
            if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name) and \
                    inner.value.id == "self":
                name = inner.attr
            elif isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = inner.name
            if name in names:
                found.append(f"{path.relative_to(ROOT)}:{inner.lineno}: {node.name}.{name}")
    return found


def test_no_module_outside_the_fence_uses_a_private_aiortc_name() -> None:
    trees = {p: ast.parse(p.read_text(), str(p)) for p in _python_files()}
    theirs = _third_party_private_names() - _own_names(trees)
    assert {"_send_keyframe", "_tx_srtp", "_nominated", "_RTCRtpSender__encoder",
            "_handle_rtp_packet", "_read_ready"} <= theirs
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value  # getattr(x, "_name"), setattr(...), name tables
            if name is not None and (name in theirs or _MANGLED.match(name)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
        for node in ast.walk(tree):  # module-level aiortc globals replaced by hand
            if isinstance(node, ast.Attribute) and node.attr == "decoder_worker" and \
                    isinstance(node.ctx, ast.Store):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: decoder_worker")
        found += _subclass_uses(path, tree)
    assert found == [], "use media_relay/webrtc_private.py instead:\n" + "\n".join(found)


# ---- the hooks are what aiortc calls: a real pair of peer connections --------------------
async def _until(condition, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_replaced_hooks_are_called_over_a_real_connection() -> None:
    send_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    recv_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    seen = {"keyframe": 0, "sender_rtcp": 0, "receiver_rtcp": 0, "rtp": 0, "tapped": 0,
            "nacked": []}
    try:
        sender = send_pc.addTransceiver(SyntheticVideoTrack(256, 144, 15),
                                        direction="sendonly").sender
        receiver = recv_pc.addTransceiver("video", direction="recvonly").receiver

        def on_keyframe() -> None:
            seen["keyframe"] += 1

        async def on_nack(sequence_number: int) -> None:
            seen["nacked"].append(sequence_number)

        private.replace_keyframe_handler(sender, on_keyframe)
        private.replace_retransmit(sender, on_nack)
        async def on_sender_rtcp(packet) -> None:
            seen["sender_rtcp"] += 1
            await sender_rtcp(packet)

        sender_rtcp = private.replace_rtcp_handler(sender, on_sender_rtcp)
        ssrcs: set[int] = set()

        async def on_rtp(packet, arrival_time_ms: int) -> None:
            seen["rtp"] += 1
            ssrcs.add(packet.ssrc)
            await receiver_rtp(packet, arrival_time_ms)

        receiver_rtp = private.replace_rtp_handler(receiver, on_rtp)

        async def on_receiver_rtcp(packet) -> None:
            seen["receiver_rtcp"] += 1
            await receiver_rtcp(packet)

        receiver_rtcp = private.replace_receiver_rtcp_handler(receiver, on_receiver_rtcp)
        assert private.receiver_kind(receiver) == "video" and receiver.track is None

        def tap(codec, frame) -> None:
            seen["tapped"] += 1

        install_tap(receiver, tap, decode=False)  # decoder queue + jitter buffer replaced

        await send_pc.setLocalDescription(await send_pc.createOffer())
        await recv_pc.setRemoteDescription(send_pc.localDescription)
        await recv_pc.setLocalDescription(await recv_pc.createAnswer())
        await send_pc.setRemoteDescription(recv_pc.localDescription)
        await _until(lambda: seen["tapped"] >= 3, "frames through the tap")
        assert private.receiver_started(receiver)
        assert ssrcs == {private.sender_ssrc(sender)}
        assert "VP8" in {c.name for c in private.receiver_codecs(receiver).values()}
        assert private.sender_ssrc(sender) in private.receiver_streams(receiver)

        dtls = sender.transport
        assert private.dtls_connected(dtls) and dtls.state == "connected"
        connection = private.ice_connection(dtls)
        pair = private.nominated_pair(connection)
        assert pair is not None and pair.protocol in private.ice_protocols(connection)
        assert callable(private.srtp_protect(dtls))

        # a PLI from the receiver reaches the replaced keyframe handler
        private.ask_for_keyframe(receiver)
        await _until(lambda: seen["keyframe"] >= 1, "the PLI at the replaced handler")
        # a NACK reaches the replaced retransmit
        await receiver._send_rtcp_nack(private.sender_ssrc(sender), [1234])
        await _until(lambda: 1234 in seen["nacked"], "the NACK at the replaced retransmit")
        # receiver reports reach the wrapped RTCP handler, and aiortc computes RTT from them
        await _until(lambda: private.sender_rtt(sender) is not None, "an RTT", timeout=20)
        assert seen["sender_rtcp"] >= 1 and seen["receiver_rtcp"] >= 1

        # counters we write are the ones getStats reports
        def sent(report, kind: str) -> int:
            return next(s.packetsSent for s in report.values() if s.type == kind)

        before = await sender.getStats()
        outbound, transport = sent(before, "outbound-rtp"), sent(before, "transport")
        private.record_sent(sender, 0, 0, 1_000_000, 1)
        private.count_transport_sent(dtls, 1_000_000, 1)
        after = await sender.getStats()
        assert sent(after, "outbound-rtp") >= outbound + 1_000_000
        assert sent(after, "transport") >= transport + 1_000_000
    finally:
        await send_pc.close()
        await recv_pc.close()
