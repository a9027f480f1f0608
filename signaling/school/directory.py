"""The directory API: district -> schools -> classrooms and teachers; clusters of schools.

Routes (rows in signaling/authz.py TABLE, each behind ``authz.guard``):

  GET/POST /api/schools, GET/PUT/DELETE /api/schools/{school}
  GET/POST /api/clusters, GET/PUT/DELETE /api/clusters/{cluster}
  GET/POST /api/schools/{school}/classrooms, PUT/DELETE /api/classrooms/{classroom}
  GET/POST /api/schools/{school}/teachers,   PUT/DELETE /api/teachers/{teacher}

Scope (docs/school-week.md): a token sees the schools of ``authz.school_scope``; anything
outside them is ``404`` for reads and writes alike (it does not learn what exists). What
it sees but may not change (a lesson admin; a school_admin editing a cluster, creating or
deleting a school) is ``403``. Conflicts are ``409 conflict`` naming the other objects: a
taken id, a classroom already enrolled in another school, a school that still has
classrooms, teachers or devices, a classroom/teacher/cluster a timetable slot uses.
Every create re-checks inside ``SchoolDB.apply``'s guard, so two racing creates of one id
cannot both succeed.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from signaling import authz
from signaling.api import json_body
from signaling.auth import Claims
from signaling.errors import ClassroomError, ErrorCode
from signaling.features import Feature

from .db import SchoolDB
from .model import (
    DEVICE_KINDS,
    NAME_MAX,
    SCHOOL_KINDS,
    Classroom,
    Cluster,
    School,
    Teacher,
    check_id,
)

if TYPE_CHECKING:
    from signaling.app import Node

MAX_SUBJECTS = 20
MAX_CLUSTER_SCHOOLS = 200
NAMED = 10
"""At most this many other objects are named in a 409's message."""


def _bad(message: str) -> ClassroomError:
    return ClassroomError(ErrorCode.BAD_MESSAGE, message)


def _not_found(what: str, id: str) -> ClassroomError:
    return ClassroomError(ErrorCode.NOT_FOUND, f"no {what} {id!r}")


def _conflict(message: str, ids: list[str]) -> ClassroomError:
    more = f" and {len(ids) - NAMED} more" if len(ids) > NAMED else ""
    return ClassroomError(ErrorCode.CONFLICT, f"{message}: {', '.join(ids[:NAMED])}{more}")


def _text(body: dict[str, Any], name: str, default: str | None = None, *,
          required: bool = False, max_len: int = NAME_MAX) -> str:
    if name not in body:
        if required:
            raise _bad(f"'{name}' is required")
        return default or ""
    value = body[name]
    if not isinstance(value, str) or len(value.strip()) > max_len:
        raise _bad(f"'{name}' must be a string of at most {max_len} characters")
    value = value.strip()
    if required and not value:
        raise _bad(f"'{name}' must not be empty")
    return value


def _choice(body: dict[str, Any], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = body.get(name, default)
    if value not in choices:
        raise _bad(f"'{name}' must be one of {', '.join(choices)}")
    return value


def _ids(body: dict[str, Any], name: str, default: list[str], max_items: int) -> list[str]:
    value = body.get(name, default)
    if not isinstance(value, list) or len(value) > max_items:
        raise _bad(f"'{name}' must be a list of at most {max_items} ids")
    return list(dict.fromkeys(check_id(v, name) for v in value))


def _subjects(body: dict[str, Any], default: list[str]) -> list[str]:
    value = body.get("subjects", default)
    if (not isinstance(value, list) or len(value) > MAX_SUBJECTS
            or not all(isinstance(v, str) and 0 < len(v.strip()) <= 30 for v in value)):
        raise _bad(f"'subjects' must be a list of at most {MAX_SUBJECTS} names "
                   "(1-30 characters each)")
    return list(dict.fromkeys(v.strip() for v in value))


def _new_id(body: dict[str, Any], field: str) -> str:
    if "id" not in body:
        return uuid.uuid4().hex[:12]
    return check_id(body["id"], field)


def _same_id(body: dict[str, Any], id: str) -> None:
    if "id" in body and body["id"] != id:
        raise _bad("'id' cannot be changed (create a new one and delete this one)")


class Directory:
    """The rules of the directory over a SchoolDB (routes call these)."""

    def __init__(self, db: SchoolDB) -> None:
        self.db = db

    # lookups with scope -----------------------------------------------------------------
    async def school(self, claims: Claims, school_id: str) -> dict[str, Any]:
        check_id(school_id, "school")
        doc = await self.db.get("school", school_id)
        if doc is None or not authz.in_scope(claims, school_id):
            raise _not_found("school", school_id)
        return doc

    async def member(self, claims: Claims, kind: str, id: str) -> dict[str, Any]:
        """A classroom or teacher of a school the token sees."""
        check_id(id, kind)
        doc = await self.db.get(kind, id)
        if doc is None or not authz.in_scope(claims, doc.get("school_id", "")):
            raise _not_found(kind, id)
        return doc

    def cluster_visible(self, claims: Claims, doc: dict[str, Any]) -> bool:
        scope = authz.school_scope(claims)
        return scope is None or bool(scope & set(doc.get("school_ids") or []))

    @staticmethod
    def require_admin(claims: Claims, school_id: str | None, what: str) -> None:
        if not authz.may_administer(claims, school_id):
            who = "the district's '*' admin" if school_id is None else (
                "the '*' admin or this school's school_admin")
            raise ClassroomError(ErrorCode.FORBIDDEN, f"only {who} may {what}")

    async def _absent(self, kind: str, id: str) -> None:
        if await self.db.get(kind, id) is not None:
            raise _conflict(f"{kind} id taken", [id])

    async def _schools_exist(self, ids: list[str]) -> None:
        missing = [i for i in ids if await self.db.get("school", i) is None]
        if missing:
            raise _bad(f"unknown schools: {', '.join(missing[:NAMED])}")

    async def _slots_using(self, **equals: str) -> list[str]:
        return [s["id"] for s in await self.db.list("slot", **equals)]

    # schools ----------------------------------------------------------------------------
    async def create_school(self, claims: Claims, body: dict[str, Any]) -> dict[str, Any]:
        self.require_admin(claims, None, "create schools")
        doc = School(id=_new_id(body, "id"), name=_text(body, "name", required=True),
                     district=_text(body, "district"),
                     kind=_choice(body, "kind", "primary", SCHOOL_KINDS)).to_json()

        async def guard(db: SchoolDB) -> None:
            await self._absent("school", doc["id"])

        await self.db.apply([("school", doc["id"], doc)], [], guard=guard)
        return doc

    async def update_school(self, claims: Claims, school_id: str,
                            body: dict[str, Any]) -> dict[str, Any]:
        old = await self.school(claims, school_id)
        self.require_admin(claims, school_id, "change this school")
        _same_id(body, school_id)
        doc = {**old, "name": _text(body, "name", old["name"], required="name" in body),
               "district": _text(body, "district", old.get("district", "")),
               "kind": _choice(body, "kind", old.get("kind", "primary"), SCHOOL_KINDS)}
        await self.db.put("school", school_id, doc)
        return doc

    async def delete_school(self, claims: Claims, school_id: str) -> None:
        await self.school(claims, school_id)
        self.require_admin(claims, None, "delete schools")

        async def holding(db: SchoolDB) -> list[dict[str, Any]]:
            return [c for c in await db.list("cluster")
                    if school_id in (c.get("school_ids") or [])]

        clusters = await holding(self.db)

        async def guard(db: SchoolDB) -> None:
            held = [f"{kind} {d['id']}" for kind in ("classroom", "teacher", "device")
                    for d in await db.list(kind, school_id=school_id)]
            if held:
                raise _conflict(f"school {school_id!r} still has", held)
            if await holding(db) != clusters:
                raise ClassroomError(ErrorCode.CONFLICT, "its clusters changed meanwhile; "
                                     "retry")

        # the school leaves its clusters in the same write
        puts = [("cluster", c["id"], {**c, "school_ids": [s for s in c["school_ids"]
                                                            if s != school_id]})
                for c in clusters]
        await self.db.apply(puts, [("school", school_id)], guard=guard)

    # clusters ---------------------------------------------------------------------------
    async def cluster(self, claims: Claims, cluster_id: str) -> dict[str, Any]:
        check_id(cluster_id, "cluster")
        doc = await self.db.get("cluster", cluster_id)
        if doc is None or not self.cluster_visible(claims, doc):
            raise _not_found("cluster", cluster_id)
        return doc

    async def create_cluster(self, claims: Claims, body: dict[str, Any]) -> dict[str, Any]:
        self.require_admin(claims, None, "create clusters")
        doc = Cluster(id=_new_id(body, "id"), name=_text(body, "name", required=True),
                      school_ids=_ids(body, "school_ids", [], MAX_CLUSTER_SCHOOLS)).to_json()

        async def guard(db: SchoolDB) -> None:
            await self._absent("cluster", doc["id"])
            await self._schools_exist(doc["school_ids"])

        await self.db.apply([("cluster", doc["id"], doc)], [], guard=guard)
        return doc

    async def update_cluster(self, claims: Claims, cluster_id: str,
                             body: dict[str, Any]) -> dict[str, Any]:
        old = await self.cluster(claims, cluster_id)
        self.require_admin(claims, None, "change clusters")
        _same_id(body, cluster_id)
        doc = {**old, "name": _text(body, "name", old["name"], required="name" in body),
               "school_ids": _ids(body, "school_ids", old.get("school_ids") or [],
                                  MAX_CLUSTER_SCHOOLS)}

        async def guard(db: SchoolDB) -> None:
            await self._schools_exist(doc["school_ids"])

        await self.db.apply([("cluster", cluster_id, doc)], [], guard=guard)
        return doc

    async def delete_cluster(self, claims: Claims, cluster_id: str) -> None:
        await self.cluster(claims, cluster_id)
        self.require_admin(claims, None, "delete clusters")

        async def guard(db: SchoolDB) -> None:
            slots = await self._slots_using(cluster_id=cluster_id)
            if slots:
                raise _conflict(f"cluster {cluster_id!r} is used by timetable slots", slots)

        await self.db.apply([], [("cluster", cluster_id)], guard=guard)

    # classrooms and teachers ------------------------------------------------------------
    def _member_doc(self, kind: str, school_id: str, body: dict[str, Any],
                    old: dict[str, Any] | None) -> dict[str, Any]:
        base = old or {}
        name = _text(body, "name", base.get("name"), required=old is None or "name" in body)
        if kind == "classroom":
            return Classroom(id=base.get("id") or _new_id(body, "id"), school_id=school_id,
                             name=name, device_kind=_choice(
                                 body, "device_kind", base.get("device_kind", "tv"),
                                 DEVICE_KINDS)).to_json()
        return Teacher(id=base.get("id") or _new_id(body, "id"), school_id=school_id,
                       name=name, subjects=_subjects(body, base.get("subjects") or [])
                       ).to_json()

    async def members(self, claims: Claims, kind: str, school_id: str
                      ) -> list[dict[str, Any]]:
        await self.school(claims, school_id)
        return await self.db.list(kind, school_id=school_id)

    async def create_member(self, claims: Claims, kind: str, school_id: str,
                            body: dict[str, Any]) -> dict[str, Any]:
        await self.school(claims, school_id)
        self.require_admin(claims, school_id, f"add a {kind} to this school")
        if body.get("school_id", school_id) != school_id:
            raise _bad("'school_id' differs from the school of the path")
        doc = self._member_doc(kind, school_id, body, None)

        async def guard(db: SchoolDB) -> None:
            if await db.get("school", school_id) is None:
                raise _not_found("school", school_id)
            other = await db.get(kind, doc["id"])
            if other is not None:
                where = other.get("school_id")
                if where != school_id:  # one classroom (one device) is in one school
                    raise ClassroomError(
                        ErrorCode.CONFLICT,
                        f"{kind} {doc['id']!r} is enrolled in another school"
                        + (f" ({where})" if authz.in_scope(claims, where) else "")
                        + "; a classroom or teacher belongs to one school")
                raise _conflict(f"{kind} id taken", [doc["id"]])

        await self.db.apply([(kind, doc["id"], doc)], [], guard=guard)
        return doc

    async def update_member(self, claims: Claims, kind: str, id: str,
                            body: dict[str, Any]) -> dict[str, Any]:
        old = await self.member(claims, kind, id)
        school_id = old["school_id"]
        self.require_admin(claims, school_id, f"change this {kind}")
        _same_id(body, id)
        if body.get("school_id", school_id) != school_id:
            raise ClassroomError(
                ErrorCode.CONFLICT, f"{kind} {id!r} is enrolled in school {school_id!r}: "
                "delete it there and create it in the other school")
        doc = self._member_doc(kind, school_id, body, old)
        await self.db.put(kind, id, doc)
        return doc

    async def delete_member(self, claims: Claims, kind: str, id: str) -> None:
        old = await self.member(claims, kind, id)
        self.require_admin(claims, old["school_id"], f"delete this {kind}")

        async def guard(db: SchoolDB) -> None:
            if kind == "teacher":
                users = [f"slot {s}" for s in await self._slots_using(teacher_id=id)]
            else:
                users = [f"slot {s}" for s in await self._slots_using(main_classroom_id=id)]
                users += [f"slot {s['id']}" for s in await db.list("slot")
                          if id in (s.get("receiving_classroom_ids") or [])]
                users += [f"device {d['id']}" for d in await db.list("device",
                                                                     classroom_id=id)
                          if not d.get("revoked_at")]
            if users:
                raise _conflict(f"{kind} {id!r} is still used by", sorted(set(users)))

        await self.db.apply([], [(kind, id)], guard=guard)


class DirectoryFeature(Feature):
    """The directory routes on a node (its ``school_db``)."""

    name = "directory"

    def __init__(self) -> None:
        self.directory: Directory | None = None

    async def start(self, node: Node) -> None:
        self.directory = Directory(node.school_db)

    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        def guard(action: str):  # noqa: ANN202 - a decorator
            return authz.guard(action, lambda request: request.app[node_key].config.secret)

        def d() -> Directory:
            assert self.directory is not None, "feature not started"
            return self.directory

        def json(data: Any, status: int = 200) -> web.Response:
            return web.json_response(data, status=status)

        def gone() -> web.Response:
            return web.Response(status=204)

        @guard("GET /api/schools")
        async def list_schools(request: web.Request, claims: Claims) -> web.Response:
            docs = await d().db.list("school")
            return json({"schools": [s for s in docs if authz.in_scope(claims, s["id"])]})

        @guard("POST /api/schools")
        async def create_school(request: web.Request, claims: Claims) -> web.Response:
            return json(await d().create_school(claims, await json_body(request)), 201)

        @guard("GET /api/schools/{school}")
        async def get_school(request: web.Request, claims: Claims) -> web.Response:
            return json(await d().school(claims, request.match_info["school"]))

        @guard("PUT /api/schools/{school}")
        async def put_school(request: web.Request, claims: Claims) -> web.Response:
            return json(await d().update_school(claims, request.match_info["school"],
                                                await json_body(request)))

        @guard("DELETE /api/schools/{school}")
        async def delete_school(request: web.Request, claims: Claims) -> web.Response:
            await d().delete_school(claims, request.match_info["school"])
            return gone()

        @guard("GET /api/clusters")
        async def list_clusters(request: web.Request, claims: Claims) -> web.Response:
            docs = await d().db.list("cluster")
            return json({"clusters": [c for c in docs if d().cluster_visible(claims, c)]})

        @guard("POST /api/clusters")
        async def create_cluster(request: web.Request, claims: Claims) -> web.Response:
            return json(await d().create_cluster(claims, await json_body(request)), 201)

        @guard("GET /api/clusters/{cluster}")
        async def get_cluster(request: web.Request, claims: Claims) -> web.Response:
            return json(await d().cluster(claims, request.match_info["cluster"]))

        @guard("PUT /api/clusters/{cluster}")
        async def put_cluster(request: web.Request, claims: Claims) -> web.Response:
            return json(await d().update_cluster(claims, request.match_info["cluster"],
                                                 await json_body(request)))

        @guard("DELETE /api/clusters/{cluster}")
        async def delete_cluster(request: web.Request, claims: Claims) -> web.Response:
            await d().delete_cluster(claims, request.match_info["cluster"])
            return gone()

        app.router.add_get("/api/schools", list_schools)
        app.router.add_post("/api/schools", create_school)
        app.router.add_get("/api/schools/{school}", get_school)
        app.router.add_put("/api/schools/{school}", put_school)
        app.router.add_delete("/api/schools/{school}", delete_school)
        app.router.add_get("/api/clusters", list_clusters)
        app.router.add_post("/api/clusters", create_cluster)
        app.router.add_get("/api/clusters/{cluster}", get_cluster)
        app.router.add_put("/api/clusters/{cluster}", put_cluster)
        app.router.add_delete("/api/clusters/{cluster}", delete_cluster)
        for kind, plural in (("classroom", "classrooms"), ("teacher", "teachers")):
            self._member_routes(app, guard, d, kind, plural)

    @staticmethod
    def _member_routes(app: web.Application, guard: Any, d: Any, kind: str,
                       plural: str) -> None:
        @guard(f"GET /api/schools/{{school}}/{plural}")
        async def list_members(request: web.Request, claims: Claims) -> web.Response:
            docs = await d().members(claims, kind, request.match_info["school"])
            return web.json_response({plural: docs})

        @guard(f"POST /api/schools/{{school}}/{plural}")
        async def create_member(request: web.Request, claims: Claims) -> web.Response:
            doc = await d().create_member(claims, kind, request.match_info["school"],
                                          await json_body(request))
            return web.json_response(doc, status=201)

        @guard(f"PUT /api/{plural}/{{{kind}}}")
        async def put_member(request: web.Request, claims: Claims) -> web.Response:
            doc = await d().update_member(claims, kind, request.match_info[kind],
                                          await json_body(request))
            return web.json_response(doc)

        @guard(f"DELETE /api/{plural}/{{{kind}}}")
        async def delete_member(request: web.Request, claims: Claims) -> web.Response:
            await d().delete_member(claims, kind, request.match_info[kind])
            return web.Response(status=204)

        app.router.add_get(f"/api/schools/{{school}}/{plural}", list_members)
        app.router.add_post(f"/api/schools/{{school}}/{plural}", create_member)
        app.router.add_put(f"/api/{plural}/{{{kind}}}", put_member)
        app.router.add_delete(f"/api/{plural}/{{{kind}}}", delete_member)
