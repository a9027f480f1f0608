"""Timetable routes (terms, slots, the week, CSV import/export): a Feature.

Scope (``authz.school_scope``): an admin of every school sees and edits all; a
school_admin sees the slots touching its schools (main or a receiving classroom) and
edits only those whose main classroom is its school's; terms are district-wide (read by
both, written by an admin of every school). Every write is checked (shape, references,
conflicts) and then applied with ``SchoolDB.apply`` whose guard re-checks the conflicts
inside the database's lock. docs/school-week.md describes the routes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import authz
from ..api import json_body
from ..errors import ClassroomError, ErrorCode
from ..features import Feature
from . import timetable as tt
from . import timetable_csv as tcsv

if TYPE_CHECKING:
    from ..app import Node
    from ..auth import Claims

def slot_schools(slot: dict[str, Any], classrooms: dict[str, dict[str, Any]]) -> set[str]:
    """The schools a slot touches (its main and receiving classrooms' schools)."""
    ids = [slot["main_classroom_id"], *slot.get("receiving_classroom_ids", ())]
    return {classrooms[c]["school_id"] for c in ids if c in classrooms}


def main_school(slot: dict[str, Any], classrooms: dict[str, dict[str, Any]]) -> str | None:
    room = classrooms.get(slot["main_classroom_id"])
    return room["school_id"] if room else None


def week_start(text: str | None, tz: str) -> dt.date:
    if text:
        day = tt.parse_date(text, "week")
    else:
        day = dt.datetime.now(tt.zone(tz)).date()
    return day - dt.timedelta(days=day.weekday())


class TimetableFeature(Feature):
    name = "timetable"

    def __init__(self) -> None:
        self.node: Node | None = None

    async def start(self, node: Node) -> None:
        self.node = node

    @property
    def db(self) -> Any:
        assert self.node is not None
        return self.node.school_db

    @property
    def tz(self) -> str:
        assert self.node is not None
        return getattr(self.node.config, "timezone", "") or tt.default_timezone()

    # checks ------------------------------------------------------------------------------
    def _may_edit(self, claims: Claims, slot: dict[str, Any], d: tt.Directory) -> None:
        school = main_school(slot, d.classrooms)
        if not authz.may_administer(claims, school):
            raise ClassroomError(ErrorCode.FORBIDDEN, f"slot {slot['id']}: its main classroom "
                                                      "is not one of your schools")

    def _visible(self, claims: Claims, slot: dict[str, Any], d: tt.Directory) -> bool:
        scope = authz.school_scope(claims)
        return scope is None or bool(slot_schools(slot, d.classrooms) & scope)

    async def _write(self, new: list[dict[str, Any]], deleted: set[str] = frozenset()  # type: ignore[assignment]
                     ) -> None:
        await self.db.apply([("slot", s["id"], s) for s in new],
                            [("slot", sid) for sid in deleted],
                            guard=tt.conflict_guard(new, deleted))

    async def _checked(self, claims: Claims, doc: Any, slot_id: str | None
                       ) -> tuple[dict[str, Any], tt.Directory]:
        d = await tt.load_directory(self.db)
        slot = tt.normalize_slot(doc, slot_id)
        tt.check_references(slot, d)
        self._may_edit(claims, slot, d)
        tt.check_conflicts([slot], d.slots, d.terms)
        return slot, d

    # routes ------------------------------------------------------------------------------
    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        def guard(action: str):  # noqa: ANN202 - a decorator
            return authz.guard(action, lambda request: request.app[node_key].config.secret)

        def admin_of_all(claims: Claims) -> None:
            if not authz.may_administer(claims):
                raise ClassroomError(ErrorCode.FORBIDDEN, "terms are the district's: an admin "
                                                          "of every school edits them")

        @guard("GET /api/terms")
        async def list_terms(request: web.Request, claims: Claims) -> web.Response:
            terms = sorted(await self.db.list("term"), key=lambda t: t["starts"])
            return web.json_response({"terms": terms})

        @guard("POST /api/terms")
        async def create_term(request: web.Request, claims: Claims) -> web.Response:
            admin_of_all(claims)
            body = await json_body(request)
            term = tt.normalize_term(body, body.get("id") or f"term-{uuid.uuid4().hex[:8]}")
            if await self.db.get("term", term["id"]) is not None:
                raise ClassroomError(ErrorCode.CONFLICT, f"term {term['id']} exists")
            await self.db.put("term", term["id"], term)
            return web.json_response(term, status=201)

        @guard("PUT /api/terms/{term}")
        async def put_term(request: web.Request, claims: Claims) -> web.Response:
            admin_of_all(claims)
            tid = request.match_info["term"]
            term = tt.normalize_term(await json_body(request), tid)
            if await self.db.get("term", tid) is None:
                raise ClassroomError(ErrorCode.NOT_FOUND, f"no term {tid}")
            slots = await self.db.list("slot", term_id=tid)
            await self.db.apply([("term", tid, term)], [],
                                guard=_term_guard(term, [s["id"] for s in slots]))
            return web.json_response(term)

        @guard("DELETE /api/terms/{term}")
        async def delete_term(request: web.Request, claims: Claims) -> web.Response:
            admin_of_all(claims)
            tid = request.match_info["term"]
            slots = await self.db.list("slot", term_id=tid)
            if slots:
                raise ClassroomError(ErrorCode.CONFLICT, f"term {tid} still has {len(slots)} "
                                                         "slot(s): delete them first")
            if not await self.db.delete("term", tid):
                raise ClassroomError(ErrorCode.NOT_FOUND, f"no term {tid}")
            return web.Response(status=204)

        @guard("GET /api/timetable")
        async def week(request: web.Request, claims: Claims) -> web.Response:
            q = request.query
            monday = week_start(q.get("week"), self.tz)
            d = await tt.load_directory(self.db)
            slots = [s for s in d.slots.values() if self._visible(claims, s, d)]
            if q.get("school"):
                slots = [s for s in slots if q["school"] in slot_schools(s, d.classrooms)]
            if q.get("cluster"):
                slots = [s for s in slots if s.get("cluster_id") == q["cluster"]]
            occ = tt.expand(slots, d.terms, monday, monday + dt.timedelta(days=6), self.tz)
            return web.json_response({
                "week": monday.isoformat(), "timezone": self.tz,
                "slots": sorted(slots, key=lambda s: s["id"]),
                "occurrences": [o.to_json() for o in occ],
                "conflicts": tt.week_conflicts(slots, d.terms)})

        @guard("POST /api/timetable/slots")
        async def create_slot(request: web.Request, claims: Claims) -> web.Response:
            body = await json_body(request)
            sid = body.get("id") or f"slot-{uuid.uuid4().hex[:10]}"
            if await self.db.get("slot", sid) is not None:
                raise ClassroomError(ErrorCode.CONFLICT, f"slot {sid} exists")
            slot, _ = await self._checked(claims, body, sid)
            await self._write([slot])
            return web.json_response(slot, status=201)

        @guard("PUT /api/timetable/slots/{slot}")
        async def put_slot(request: web.Request, claims: Claims) -> web.Response:
            sid = request.match_info["slot"]
            body = await json_body(request)
            slot, d = await self._checked(claims, body, sid)
            old = d.slots.get(sid)
            if old is None or not self._visible(claims, old, d):
                raise ClassroomError(ErrorCode.NOT_FOUND, f"no slot {sid}")
            self._may_edit(claims, old, d)
            await self._write([slot])
            return web.json_response(slot)

        @guard("DELETE /api/timetable/slots/{slot}")
        async def delete_slot(request: web.Request, claims: Claims) -> web.Response:
            sid = request.match_info["slot"]
            d = await tt.load_directory(self.db)
            old = d.slots.get(sid)
            if old is None or not self._visible(claims, old, d):
                raise ClassroomError(ErrorCode.NOT_FOUND, f"no slot {sid}")
            self._may_edit(claims, old, d)
            await self.db.delete("slot", sid)
            return web.Response(status=204)

        @guard("POST /api/timetable/import")
        async def import_csv(request: web.Request, claims: Claims) -> web.Response:
            body = await request.read()  # the app's body limit (256 KiB) applies: 413
            dry = request.query.get("dry_run", "") in ("1", "true", "yes")
            d = await tt.load_directory(self.db)
            slots = self._import_rows(claims, body, d)
            created = sum(1 for s in slots if s["id"] not in d.slots)
            result = {"dry_run": dry, "rows": len(slots), "created": created,
                      "updated": len(slots) - created}
            if not dry:
                try:
                    await self._write(slots)
                except tt.SlotConflict as exc:  # a write in between: say which row
                    raise tcsv.ImportRejected([tcsv.RowError(0, "", exc.message,
                                                             exc.other)]) from None
            return web.json_response(result)

        @guard("GET /api/timetable/export.csv")
        async def export_csv(request: web.Request, claims: Claims) -> web.Response:
            d = await tt.load_directory(self.db)
            slots = [s for s in d.slots.values() if self._visible(claims, s, d)]
            if request.query.get("term"):
                slots = [s for s in slots if s["term_id"] == request.query["term"]]
            return web.Response(body=tcsv.export(slots), content_type="text/csv",
                                charset="utf-8", headers={
                                    "Content-Disposition":
                                        'attachment; filename="timetable.csv"'})

        app.router.add_get("/api/terms", list_terms)
        app.router.add_post("/api/terms", create_term)
        app.router.add_put("/api/terms/{term}", put_term)
        app.router.add_delete("/api/terms/{term}", delete_term)
        app.router.add_get("/api/timetable", week)
        app.router.add_post("/api/timetable/slots", create_slot)
        app.router.add_put("/api/timetable/slots/{slot}", put_slot)
        app.router.add_delete("/api/timetable/slots/{slot}", delete_slot)
        app.router.add_post("/api/timetable/import", import_csv)
        app.router.add_get("/api/timetable/export.csv", export_csv)

    def _import_rows(self, claims: Claims, body: bytes, d: tt.Directory
                     ) -> list[dict[str, Any]]:
        """Every row checked (shape, references, scope, conflicts with stored slots and
        with the file's own rows); any error -> ImportRejected listing them all."""
        rows, errors = tcsv.parse(body)
        resolve = {"term": tcsv.Resolver(d.terms, "term"),
                   "teacher": tcsv.Resolver(d.teachers, "teacher"),
                   "classroom": tcsv.Resolver(d.classrooms, "classroom"),
                   "cluster": tcsv.Resolver(d.clusters, "cluster")}
        good: list[tuple[int, dict[str, Any]]] = []
        seen: dict[str, int] = {}
        for row in rows:
            doc, row_errors = tcsv.row_to_slot(row, resolve)
            if doc is None:
                errors.extend(row_errors)
                continue
            try:
                slot = tt.normalize_slot(doc, doc["id"])
                tt.check_references(slot, d)
                self._may_edit(claims, slot, d)
                old = d.slots.get(slot["id"])
                if old is not None:
                    self._may_edit(claims, old, d)
            except ClassroomError as exc:
                errors.append(tcsv.RowError(row.line, tcsv.column_of(exc.message),
                                            exc.message))
                continue
            if slot["id"] in seen:
                errors.append(tcsv.RowError(row.line, "编号", f"slot {slot['id']} is also row "
                                                              f"{seen[slot['id']]}"))
                continue
            seen[slot["id"]] = row.line
            good.append((row.line, slot))
        new_ids = {s["id"] for _, s in good}
        index = tt.ConflictIndex([s for sid, s in d.slots.items() if sid not in new_ids],
                                 d.terms)
        for line, slot in good:
            other = index.find(slot)
            if other is not None:
                err = tt.conflict_error(slot, other)
                where = f" (row {seen[other['id']]})" if other["id"] in seen else ""
                errors.append(tcsv.RowError(line, "开始", err.message + where, other))
                continue
            index.add(slot)
        if errors:
            errors.sort(key=lambda e: e.row)
            raise tcsv.ImportRejected(errors)
        if not good:
            raise ClassroomError(ErrorCode.BAD_MESSAGE, "no rows to import")
        return [s for _, s in good]


def _term_guard(term: dict[str, Any], slot_ids: list[str]) -> Any:
    """Changing a term's dates may make its one-offs fall outside it or collide: refuse."""
    async def guard(db: Any) -> None:
        slots = {s["id"]: s for s in await db.list("slot")}
        terms = {t["id"]: t for t in await db.list("term")}
        terms[term["id"]] = term
        for sid in slot_ids:
            s = slots.get(sid)
            if s is not None and s.get("date") and not term["starts"] <= s["date"] <= term["ends"]:
                raise ClassroomError(ErrorCode.CONFLICT, f"slot {sid} ({s['date']}) would be "
                                                         "outside the term")
        tt.check_conflicts([slots[s] for s in slot_ids if s in slots], slots, terms)

    return guard
