"""``classroom library list|show|export|delete|rebuild|package``: library maintenance.

Works on the library folder directly (no server needed). Deleting a recording a running
server is writing is refused (its state is ``recording``/``paused``/``packaging``) unless
``--force``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from .catalog import Catalog, valid_id
from .packager import REPLAY_DIR, PackagingError, package
from .recovery import recover_segments


def add_parser(sub: argparse._SubParsersAction) -> None:
    lib = sub.add_parser("library", help="list, show, export, delete recordings; rebuild")
    lib.add_argument("--library", type=Path, default=Path.cwd() / "library")
    cmds = lib.add_subparsers(dest="library_command", required=True)
    ls = cmds.add_parser("list", help="recordings, newest first")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--school", default="")
    show = cmds.add_parser("show", help="one recording's record")
    show.add_argument("recording")
    export = cmds.add_parser("export", help="copy the recording's MP4 to a file")
    export.add_argument("recording")
    export.add_argument("output", type=Path)
    delete = cmds.add_parser("delete", help="delete a recording and its files")
    delete.add_argument("recording")
    delete.add_argument("--force", action="store_true")
    cmds.add_parser("rebuild", help="rebuild catalog.json from the recordings' folders")
    pkg = cmds.add_parser("package", help="(re)package a recording (recovers segments)")
    pkg.add_argument("recording")


def _fmt_duration(seconds: float) -> str:
    seconds = int(seconds or 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run(args: argparse.Namespace) -> int:
    library = args.library.resolve()
    if not library.is_dir():
        print(f"classroom library: no library folder at {library}", file=sys.stderr)
        return 2
    catalog = Catalog(library)
    cmd = args.library_command
    rid = getattr(args, "recording", None)
    if rid is not None and not valid_id(rid):
        print(f"classroom library: bad recording id {rid!r}", file=sys.stderr)
        return 2
    if cmd == "list":
        records = [r for r in catalog.list()
                   if not args.school or args.school in (r.get("schools") or [])]
        if args.json:
            print(json.dumps(records, ensure_ascii=False, indent=1))
            return 0
        for r in records:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("started_at") or 0))
            print(f"{r['id']:<44} {r.get('state', ''):<11} {when}  "
                  f"{_fmt_duration(r.get('duration', 0))}  {r.get('size', 0) / 1e6:7.1f} MB  "
                  f"{r.get('teacher', '')} {r.get('title', '')}")
        if not records:
            print("(no recordings)")
        return 0
    if cmd == "rebuild":
        count = catalog.rebuild()
        print(f"catalog rebuilt: {count} recordings")
        return 0
    record = catalog.get(rid)
    if record is None:
        print(f"classroom library: no recording {rid}", file=sys.stderr)
        return 1
    if cmd == "show":
        print(json.dumps(record, ensure_ascii=False, indent=1))
        return 0
    if cmd == "export":
        source = catalog.dir_of(rid) / REPLAY_DIR / "lesson.mp4"
        if not source.is_file():
            print("classroom library: not packaged yet (run `classroom library package`)",
                  file=sys.stderr)
            return 1
        shutil.copyfile(source, args.output)
        print(f"{args.output} ({args.output.stat().st_size / 1e6:.1f} MB)")
        return 0
    if cmd == "delete":
        if record.get("state") in ("recording", "paused", "packaging") and not args.force:
            print("classroom library: the recording is being written or packaged "
                  "(--force if no server is running)", file=sys.stderr)
            return 1
        catalog.delete(rid)
        print(f"deleted {rid}")
        return 0
    if cmd == "package":
        directory = catalog.dir_of(rid)
        segments = recover_segments(directory)
        try:
            summary = package(directory)
        except PackagingError as exc:
            print(f"classroom library: {exc}", file=sys.stderr)
            return 1
        catalog.update(rid, state="ready", duration=summary["duration"],
                       chapters=summary["chapters"], segments=len(segments),
                       renditions=[{k: r[k] for k in ("name", "kind", "width", "height",
                                                      "average_bps", "peak_bps") if k in r}
                                   for r in summary["renditions"]],
                       poster=summary["poster"], size=summary["size"])
        print(f"packaged {rid} in {summary['packaging_seconds']:.1f} s")
        return 0
    return 2
