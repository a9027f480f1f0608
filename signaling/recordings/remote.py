"""The library across nodes: list every live node's recordings, play them from any node.

Several nodes share one Redis and each keeps its own library folder. Nothing is copied:

* ``GET /api/recordings`` asks every other live node (``NodeBoard.nodes()``), at its own
  address (``link_url``: a worker's private one, not the shared public port), for its own
  list with the caller's ``Authorization`` header (same secret, same scope: the holder
  applies the same table) and a short timeout, and merges. Each entry says its ``node``;
  a node that does not answer is named in ``unreachable_nodes`` and just lacks its entries.
* ``/api/replay/{id}`` and ``/media/...`` of a recording that is not here are proxied,
  streamed, with ``Range`` passed through, to the node that answers for it (the one a
  listing last saw it on, then the other live nodes). The signature is checked here
  before anything goes out and again at the holder; the signed path is the link itself
  (no token is ever put in a URL).
* A forwarded request carries ``X-Classroom-Forwarded`` and is answered from the local
  library only, so two nodes never bounce a request between them.
* The recordings of one live session of a lesson (``group``: its origin moved, so each
  node it was recorded on holds a part) are listed as one entry (:func:`fold_groups`):
  its ``parts`` in order on one timeline, each naming its ``recording`` and ``node``, and
  ``recordings`` with each part's own replay links (played part by part from its holder).

Without Redis (one node) none of this runs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from .feature import RecordingFeature

logger = logging.getLogger(__name__)

FORWARDED = "X-Classroom-Forwarded"
LIST_TIMEOUT = aiohttp.ClientTimeout(total=3.0, sock_connect=1.0)
MEDIA_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=1.0, sock_read=30.0)
REQUEST_HEADERS = ("Range", "If-Range", "If-None-Match", "If-Modified-Since")
RESPONSE_HEADERS = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges",
                    "Content-Encoding", "Content-Disposition", "Cache-Control", "ETag",
                    "Last-Modified", "X-Content-Type-Options", "Access-Control-Allow-Origin")
CHUNK = 64 * 1024
MEMBER_FIELDS = ("id", "node", "state", "started_at", "ended_at", "duration", "parts",
                 "size", "renditions", "lines", "poster", "recovered", "replay_url",
                 "poster_url", "download_url")
"""What a folded entry's ``recordings`` keep of each part's own entry."""
_STATE_ORDER = ("recording", "paused", "interrupted", "packaging", "ready", "failed")


def fold_groups(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per recording ``group`` of the list (two or more recordings of one live
    session of a lesson, made on the nodes its origin moved between), newest first. The
    entry is the first part's with ``parts`` (every part of every recording, ``start`` on
    the session's timeline, ``recording`` and ``node`` named), ``chapters`` the same way,
    ``duration``, ``size``, ``schools`` over all, ``ended_at`` of the last, ``state`` the
    least finished part's, and ``recordings``: each recording with its own links."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        if entry.get("group"):
            groups.setdefault(entry["group"], []).append(entry)
    out: list[dict[str, Any]] = []
    for entry in entries:
        members = groups.get(entry.get("group") or "")
        if members is None or len(members) < 2:
            out.append(entry)
        elif entry is members[0]:
            out.append(_folded(members))
    out.sort(key=lambda e: e.get("started_at") or 0, reverse=True)
    return out


def _folded(members: list[dict[str, Any]]) -> dict[str, Any]:
    members = sorted(members, key=lambda e: e.get("started_at") or 0)
    entry = dict(members[0])
    offset = 0.0
    parts: list[dict[str, Any]] = []
    chapters: list[dict[str, Any]] = []
    for m in members:
        where = {"recording": m["id"], **({"node": m["node"]} if m.get("node") else {})}
        for part in m.get("parts") or [{"start": 0.0, "started_at": m.get("started_at")}]:
            parts.append({**part, "start": round(offset + (part.get("start") or 0.0), 3),
                          **where})
        for chapter in m.get("chapters") or []:
            chapters.append({**chapter, **where,
                             "start": round(offset + (chapter.get("start") or 0.0), 3)})
        offset += float(m.get("duration") or 0.0)
    states = [m.get("state") for m in members]
    entry.update(
        parts=parts, chapters=chapters, duration=round(offset, 3),
        ended_at=members[-1].get("ended_at"), size=sum(m.get("size") or 0 for m in members),
        schools=sorted({s for m in members for s in m.get("schools") or []}),
        state=next((s for s in _STATE_ORDER if s in states), states[0]),
        recordings=[{k: m[k] for k in MEMBER_FIELDS if k in m} for m in members])
    return entry


class RemoteLibrary:
    """The other live nodes' libraries, seen through their own HTTP API."""

    def __init__(self, feature: RecordingFeature) -> None:
        self.feature = feature
        self.holders: dict[str, str] = {}
        """Recording id -> node id, as the last merged listing saw it."""
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def active(self, request: web.Request) -> bool:
        """Across nodes only with Redis, and never for a request another node forwarded."""
        node = self.feature.node
        return (node is not None and bool(node.config.redis_url)
                and FORWARDED not in request.headers and self._board() is not None)

    def node_id(self) -> str:
        assert self.feature.node is not None
        return self.feature.node.config.node_id

    def _board(self) -> Any:
        node = self.feature.node
        nodes = next((f for f in node.features if f.name == "nodes"), None) if node else None
        return getattr(nodes, "board", None)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(auto_decompress=False)
        return self._http

    async def _others(self) -> list[dict[str, Any]]:
        me = self.node_id()
        return [n for n in await self._board().nodes()
                if n.get("id") != me and (n.get("link_url") or n.get("http_url"))]

    @staticmethod
    def _address(node: dict[str, Any]) -> str:
        """Where a node answers itself: its own address (``link_url``), not the public URL,
        which behind a proxy or on a port shared by workers reaches any node."""
        return str(node.get("link_url") or node["http_url"]).rstrip("/")

    # ---- listing -------------------------------------------------------------------------
    async def listing(self, request: web.Request) -> tuple[list[dict[str, Any]], list[str]]:
        """The other nodes' entries (each with ``node``) and the nodes that did not answer."""
        others = await self._others()
        headers = {FORWARDED: "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]

        async def fetch(node: dict[str, Any]) -> list[dict[str, Any]] | None:
            url = self._address(node) + "/api/recordings"
            try:
                async with self._session().get(url, params=request.query, headers=headers,
                                               timeout=LIST_TIMEOUT) as resp:
                    if resp.status != 200:
                        logger.warning("remote listing refused",
                                       extra={"node": node["id"], "status": resp.status})
                        return None
                    body = await resp.json()
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                logger.warning("remote listing failed",
                               extra={"node": node["id"], "error": type(exc).__name__})
                return None
            entries = body.get("recordings") if isinstance(body, dict) else None
            return [e for e in entries or [] if isinstance(e, dict) and e.get("id")]

        results = await asyncio.gather(*(fetch(n) for n in others))
        merged: list[dict[str, Any]] = []
        unreachable: list[str] = []
        for node, entries in zip(others, results, strict=True):
            if entries is None:
                unreachable.append(node["id"])
                continue
            for entry in entries:
                entry["node"] = node["id"]
                self.holders[entry["id"]] = node["id"]
                merged.append(entry)
        return merged, unreachable

    # ---- playback ------------------------------------------------------------------------
    async def proxy(self, request: web.Request, recording_id: str) -> web.StreamResponse | None:
        """Stream the same request from the node that has the recording; None if none has."""
        path = request.rel_url.path
        if ".." in path or "//" in path or "%" in request.raw_path.partition("?")[0]:
            return None  # only plain names go out; the holder checks them again
        others = await self._others()
        known = self.holders.get(recording_id)
        others.sort(key=lambda n: n["id"] != known)
        headers = {k: request.headers[k] for k in REQUEST_HEADERS if k in request.headers}
        headers[FORWARDED] = "1"
        for node in others:
            url = self._address(node) + request.rel_url.path_qs
            try:
                resp = await self._session().get(url, headers=headers, timeout=MEDIA_TIMEOUT,
                                                 allow_redirects=False)
            except (TimeoutError, aiohttp.ClientError) as exc:
                logger.warning("remote media failed",
                               extra={"node": node["id"], "recording": recording_id,
                                      "error": type(exc).__name__})
                continue
            try:
                if resp.status == 404:
                    continue
                self.holders[recording_id] = node["id"]
                out = web.StreamResponse(status=resp.status, headers={
                    k: resp.headers[k] for k in RESPONSE_HEADERS if k in resp.headers})
                await out.prepare(request)
                async for chunk in resp.content.iter_chunked(CHUNK):
                    await out.write(chunk)
                await out.write_eof()
                return out
            finally:
                resp.release()
        return None
