"""HTTP for the library: recordings API, signed media URLs, the hls.js asset.

* ``GET /api/recordings`` (any token): recordings the token may see; filters ``q``,
  ``subject``, ``grade``, ``teacher``, ``school``, ``lesson``, ``state``.
* ``GET /api/recordings/{id}``: the record, with a signed ``replay_url`` when ready.
* ``PATCH /api/recordings/{id}`` (admin, the lesson's teacher): ``title``, ``subject``,
  ``grade``, ``published``.
* ``DELETE /api/recordings/{id}`` (admin, the lesson's teacher): ``409 recording_busy``
  while it is being written or packaged.
* ``POST /api/recordings/{id}/link`` ``{ttl?}`` -> ``{url, expires, media}``: a signed link.
* ``GET /api/replay/{id}?exp=&sig=`` (the signed link): what the replay page needs.
* ``GET /media/{id}/{exp}/{sig}/{file}`` (the signed link): ``hls/...``, ``lesson.mp4``
  (``?download=1``), ``poster.jpg``, ``thumbs/...``, ``*.vtt``; Range requests.
* ``GET /vendor/hls.min.js``: hls.js (light build, gzip), shipped in ``recording/vendor``;
  404 if missing (the page then uses native HLS or the MP4).

Who may see or change a recording is signaling/authz.py's table (lesson and school
checked on every operation; every token verified by ``authz.guard``, nowhere else): a
recording a token may not see is ``404`` (its existence is not told), one it sees but may
not change is ``403``. The replay link is an HMAC of the recording id and expiry with the
node's secret (``sign``; rows ``Lesson.SIGNED``). Ids and file names are matched against
strict patterns and resolved inside the recording's folder (``RecordingLibrary.replay_file``);
anything else is ``404``.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from recording.catalog import EDITABLE, valid_id
from recording.library import HLS_JS
from signaling import authz
from signaling.auth import Claims
from signaling.errors import ClassroomError, ErrorCode
from signaling.protocol import decode_json

from .remote import FORWARDED, fold_groups

if TYPE_CHECKING:
    from .feature import RecordingFeature

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl", ".m4s": "video/iso.segment",
    ".mp4": "video/mp4", ".jpg": "image/jpeg", ".vtt": "text/vtt",
}
PUBLIC_FIELDS = ("id", "lesson", "title", "subject", "grade", "teacher", "school", "schools",
                 "published", "date", "started_at", "ended_at", "duration", "chapters",
                 "renditions", "lines", "parts", "size", "state", "poster", "recovered",
                 "consents", "group")


def sign(secret: str, recording_id: str, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"replay:{recording_id}:{expires}".encode(),
                   hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()


def check_signature(secret: str, recording_id: str, expires: str, signature: str) -> bool:
    if not valid_id(recording_id) or not expires.isdigit() or len(expires) > 12:
        return False
    if int(expires) < time.time():
        return False
    return hmac.compare_digest(sign(secret, recording_id, int(expires)), signature)


def add_routes(app: web.Application, feature: RecordingFeature) -> None:
    library = feature.library

    def secret() -> str:
        assert feature.node is not None
        return feature.node.config.secret

    def guard(action: str):  # noqa: ANN202 - a decorator
        return authz.guard(action, lambda request: secret())

    def record_for(request: web.Request, claims: Claims, action: str) -> dict[str, Any]:
        """The recording of the path, if the table lets this token do ``action`` on it."""
        rid = request.match_info["recording"]
        return authz.check_recording(action, claims,
                                     feature.catalog.get(rid) if valid_id(rid) else None)

    def link(rid: str, ttl: int | None = None) -> dict[str, Any]:
        expires = int(time.time()) + (ttl or library.config.link_ttl)
        sig = sign(secret(), rid, expires)
        return {"url": f"/replay/{rid}?exp={expires}&sig={sig}", "expires": expires,
                "media": f"/media/{rid}/{expires}/{sig}/"}

    def public(record: dict[str, Any], with_links: bool = True) -> dict[str, Any]:
        out = {k: record.get(k) for k in PUBLIC_FIELDS}
        if with_links and record.get("state") == "ready":
            links = link(record["id"])
            out["replay_url"] = links["url"]
            out["poster_url"] = links["media"] + "poster.jpg" if record.get("poster") else None
            out["download_url"] = links["media"] + "lesson.mp4?download=1"
        return out

    @guard("GET /api/recordings")
    async def list_recordings(request: web.Request, claims: Claims) -> web.Response:
        q = request.query.get("q", "").strip().lower()[:100]
        filters = {k: request.query.get(k, "").strip()[:100]
                   for k in ("subject", "grade", "teacher", "school", "lesson", "state")}
        out = []
        for record in feature.catalog.list():
            if not authz.may_see_recording(claims, record):
                continue
            if any(v and (v not in (record.get(k) or "") if k != "school"
                          else v not in (record.get("schools") or []) and v != record.get(k))
                   for k, v in filters.items()):
                continue
            if q:
                text = " ".join(str(record.get(k) or "") for k in (
                    "title", "subject", "grade", "teacher", "school", "lesson", "date")).lower()
                text += " " + " ".join(c.get("title", "") for c in record.get("chapters") or [])
                if q not in text.lower():
                    continue
            out.append(public(record))
        if not feature.remote.active(request):  # one folder may hold a group's parts;
            # another node asking (forwarded) folds its merged list itself
            forwarded = FORWARDED in request.headers
            return web.json_response({"recordings": out if forwarded else fold_groups(out)})
        here = feature.remote.node_id()  # the library across nodes (remote.py)
        for entry in out:
            entry["node"] = here
        remote, unreachable = await feature.remote.listing(request)
        seen = {entry["id"] for entry in out}
        out += [entry for entry in remote if entry["id"] not in seen]
        return web.json_response({"recordings": fold_groups(out),  # (sorted, newest first)
                                  "unreachable_nodes": unreachable})

    @guard("GET /api/recordings/{recording}")
    async def get_recording(request: web.Request, claims: Claims) -> web.Response:
        return web.json_response(public(
            record_for(request, claims, "GET /api/recordings/{recording}")))

    @guard("PATCH /api/recordings/{recording}")
    async def patch_recording(request: web.Request, claims: Claims) -> web.Response:
        record = record_for(request, claims, "PATCH /api/recordings/{recording}")
        try:
            body = await request.json(loads=decode_json)
        except (ValueError, UnicodeDecodeError):
            raise ClassroomError(ErrorCode.BAD_JSON, "body is not valid JSON") from None
        if not isinstance(body, dict) or not body:
            raise ClassroomError(ErrorCode.BAD_JSON, "body must be a non-empty JSON object")
        fields: dict[str, Any] = {}
        for key, value in body.items():
            if key in EDITABLE:
                if not isinstance(value, str) or len(value) > EDITABLE[key]:
                    raise ClassroomError(ErrorCode.BAD_MESSAGE,
                                         f"'{key}' must be a string of <= {EDITABLE[key]}")
                fields[key] = value
            elif key == "published":
                if not isinstance(value, bool):
                    raise ClassroomError(ErrorCode.BAD_MESSAGE, "'published' must be a boolean")
                fields[key] = value
            else:
                raise ClassroomError(ErrorCode.BAD_MESSAGE, f"'{key}' cannot be changed")
        updated = await asyncio.to_thread(feature.catalog.update, record["id"], **fields)
        return web.json_response(public(updated or record))

    @guard("DELETE /api/recordings/{recording}")
    async def delete_recording(request: web.Request, claims: Claims) -> web.Response:
        record = record_for(request, claims, "DELETE /api/recordings/{recording}")
        if record["id"] in library.writing():
            return web.json_response(
                {"error": {"code": "recording_busy",
                           "message": "the recording is being written or packaged"}},
                status=409)
        await asyncio.to_thread(feature.catalog.delete, record["id"])
        return web.json_response({"deleted": record["id"]})

    @guard("POST /api/recordings/{recording}/link")
    async def make_link(request: web.Request, claims: Claims) -> web.Response:
        record = record_for(request, claims, "POST /api/recordings/{recording}/link")
        ttl = library.config.link_ttl
        if request.body_exists:  # (can_read_body is False once the body-timeout middleware read it)
            try:
                body = await request.json(loads=decode_json)
            except (ValueError, UnicodeDecodeError):
                raise ClassroomError(ErrorCode.BAD_JSON, "body is not valid JSON") from None
            ttl = body.get("ttl", ttl) if isinstance(body, dict) else ttl
            if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 < ttl <= 30 * 86400:
                raise ClassroomError(ErrorCode.BAD_MESSAGE, "'ttl': 1 s .. 30 days")
        return web.json_response(link(record["id"], ttl), status=201)

    @authz.public("GET /api/replay/{recording}")
    async def replay_info(request: web.Request) -> web.Response:
        rid = request.match_info["recording"]
        if not check_signature(secret(), rid, request.query.get("exp", ""),
                               request.query.get("sig", "")):
            raise ClassroomError(ErrorCode.FORBIDDEN, "the link is invalid or has expired")
        record = feature.catalog.get(rid)
        if record is None and feature.remote.active(request):
            proxied = await feature.remote.proxy(request, rid)  # held by another node
            if proxied is not None:
                return proxied
        if record is None:
            raise ClassroomError(ErrorCode.NOT_FOUND, "no such recording")
        out = public(record, with_links=False)
        exp, sig = request.query["exp"], request.query["sig"]
        out["media"] = f"/media/{rid}/{exp}/{sig}/"
        out["expires"] = int(exp)
        return web.json_response(out)

    @authz.public("GET /media/{recording}/{exp}/{sig}/{file}")
    async def media(request: web.Request) -> web.StreamResponse:
        info = request.match_info
        rid, name = info["recording"], info["file"]
        if not check_signature(secret(), rid, info["exp"], info["sig"]):
            raise web.HTTPForbidden(text="the link is invalid or has expired")
        path = library.replay_file(rid, name)
        if path is None and feature.catalog.get(rid) is None and feature.remote.active(request):
            proxied = await feature.remote.proxy(request, rid)  # held by another node
            if proxied is not None:
                return proxied
        if path is None:
            raise web.HTTPNotFound()
        headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff",
                   "Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                   "Access-Control-Allow-Origin": "*"}
        if name == "lesson.mp4" and request.query.get("download"):
            headers["Content-Disposition"] = f'attachment; filename="{rid}.mp4"'
        return web.FileResponse(path, headers=headers)

    gzipped: dict[str, bytes] = {}

    @authz.public("GET /vendor/hls.min.js")
    async def hls_js(request: web.Request) -> web.StreamResponse:
        if not HLS_JS.is_file():
            raise web.HTTPNotFound(text="hls.js missing from the package (scripts/vendor-hls)")
        headers = {"Cache-Control": "public, max-age=86400",
                   "Content-Type": "text/javascript", "Vary": "Accept-Encoding"}
        if "gzip" not in request.headers.get("Accept-Encoding", ""):
            return web.FileResponse(HLS_JS, headers=headers)
        if "body" not in gzipped:  # thin links: 120 KB instead of 390 KB
            gzipped["body"] = await asyncio.to_thread(
                lambda: gzip.compress(HLS_JS.read_bytes(), 9))
        return web.Response(body=gzipped["body"],
                            headers={**headers, "Content-Encoding": "gzip"})

    app.router.add_get("/api/recordings", list_recordings)
    app.router.add_get("/api/recordings/{recording}", get_recording)
    app.router.add_patch("/api/recordings/{recording}", patch_recording)
    app.router.add_delete("/api/recordings/{recording}", delete_recording)
    app.router.add_post("/api/recordings/{recording}/link", make_link)
    app.router.add_get("/api/replay/{recording}", replay_info)
    app.router.add_get("/media/{recording}/{exp}/{sig}/{file:.+}", media)
    app.router.add_get("/vendor/hls.min.js", hls_js)
