"""A headless classroom from the command line: join, receive, print what arrives.

    python -m classroom_client BASE_URL TOKEN [--seconds 60] [--turn-transport tcp]

Prints one JSON line every ``--interval`` seconds: ``peer_id``, ``video_frames`` and
``audio_frames`` (decoded), the subscribe connection's state and its ICE ``pair``
(``local_type`` ``relay`` when the media comes through TURN) and the ``turn_url`` chosen.
Exits 0 after ``--seconds`` (or on SIGTERM/SIGINT), 1 when the server refuses the token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time

from .client import ClassroomClient, ProtocolError
from .ice import TRANSPORTS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m classroom_client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url", help="e.g. https://classroom.school.example")
    parser.add_argument("token", help="a classroom token (classroom token --role classroom)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to stay")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between lines")
    parser.add_argument("--video-codec", choices=("vp8", "h264"), default=None,
                        help="offer only this video codec (h264: an H.264-only TV box)")
    parser.add_argument("--turn-transport", choices=TRANSPORTS, default=None,
                        help="use the welcome's TURN URL of this transport (default: the "
                             "first one coturn grants an allocation on)")
    return parser


def _line(client: ClassroomClient) -> str:
    pc = client.pcs.get("subscribe")
    return json.dumps({
        "t": round(time.monotonic(), 3), "peer_id": client.peer_id,
        "video_frames": client.video_frames, "audio_frames": client.audio_frames,
        "connection": pc.connectionState if pc is not None else "new",
        "pair": client.selected_pair("subscribe"), "turn_url": client.turn_url,
    })


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = ClassroomClient(args.base_url, args.token, turn_transport=args.turn_transport,
                             video_codec=args.video_codec)
    try:
        await client.connect()
        await client.subscribe()
        deadline = time.monotonic() + args.seconds
        while not stop.is_set() and time.monotonic() < deadline:
            print(_line(client), flush=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.interval)
    except ProtocolError as exc:
        print(f"classroom_client: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
