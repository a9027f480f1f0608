"""``GET /api/stats`` and ``/api/stats.csv``: usage statistics for the caller's schools.

Query: ``from``/``to`` (YYYY-MM-DD, inclusive), ``school``, ``teacher``, ``subject``,
``cluster``, ``group_by`` = school|teacher|subject|cluster|day. A school outside the
caller's scope gives empty figures (nothing about other schools leaks). signaling/school/
stats.py says what each figure means.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import authz
from ..errors import ClassroomError, ErrorCode
from ..features import Feature
from . import stats as st
from . import timetable as tt

if TYPE_CHECKING:
    from ..app import Node
    from ..auth import Claims


def parse_query(q: Any) -> st.Query:
    group = q.get("group_by") or None
    if group is not None and group not in st.GROUPS:
        raise ClassroomError(ErrorCode.BAD_MESSAGE,
                             f"group_by: one of {', '.join(st.GROUPS)}, got {group!r}")
    lo, hi = st.parse_day(q.get("from"), "from"), st.parse_day(q.get("to"), "to")
    if lo and hi and hi < lo:
        raise ClassroomError(ErrorCode.BAD_MESSAGE, "to: before from")
    for name in ("school", "teacher", "subject", "cluster"):
        if len(q.get(name, "")) > 100:
            raise ClassroomError(ErrorCode.BAD_MESSAGE, f"{name}: at most 100 characters")
    return st.Query(lo, hi, q.get("school") or None, q.get("teacher") or None,
                    q.get("subject") or None, q.get("cluster") or None, group)


class StatsFeature(Feature):
    name = "stats"

    def __init__(self) -> None:
        self.node: Node | None = None
        self.stats: st.Stats | None = None

    async def start(self, node: Node) -> None:
        self.node = node
        self.stats = st.Stats(getattr(node.config, "timezone", "") or tt.default_timezone())

    async def close(self) -> None:
        if self.stats is not None:
            await self.stats.close()

    async def answer(self, request: web.Request, claims: Claims) -> dict[str, Any]:
        assert self.node is not None and self.stats is not None
        q = parse_query(request.query)
        return await self.stats.query(self.node.school_db, q, authz.school_scope(claims))

    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        def guard(action: str):  # noqa: ANN202 - a decorator
            return authz.guard(action, lambda request: request.app[node_key].config.secret)

        @guard("GET /api/stats")
        async def stats_json(request: web.Request, claims: Claims) -> web.Response:
            return web.json_response(await self.answer(request, claims))

        @guard("GET /api/stats.csv")
        async def stats_csv(request: web.Request, claims: Claims) -> web.Response:
            result = await self.answer(request, claims)
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\r\n").writerows(st.to_csv_rows(result))
            return web.Response(body=("\ufeff" + buf.getvalue()).encode("utf-8"),
                                content_type="text/csv", charset="utf-8", headers={
                                    "Content-Disposition": 'attachment; filename="stats.csv"'})

        app.router.add_get("/api/stats", stats_json)
        app.router.add_get("/api/stats.csv", stats_csv)
