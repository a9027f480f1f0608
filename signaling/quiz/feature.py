"""The practice-and-test feature: messages, live tallies, timers, welcome state, routes.

Teacher: ``push-question`` (practice), ``open-test`` (timed set), ``close-round``,
``reveal``. Classroom / student: ``quiz-answer`` (acknowledged with ``quiz-ack`` only after
the answer is stored). Anyone: ``quiz-state``. Lesson events (every node, every page):
``quiz-question``, ``quiz-test``, ``quiz-closed``, ``quiz-reveal``. Teachers also get
``quiz-tally`` whenever the answers or the classrooms online change (docs/practice-and-tests.md).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from prometheus_client import Counter, Histogram

from signaling import authz
from signaling.auth import Claims, Role
from signaling.errors import ClassroomError, ErrorCode
from signaling.features import Feature
from signaling.protocol import decode_json
from signaling.store import StoreUnavailable

from . import messages as msgs
from . import questions as qmod
from . import scoring
from .report import build_report, learner_report, report_csv, timetable_classrooms
from .store import DUPLICATE, TAKEN, QuizStore, open_quiz_store

if TYPE_CHECKING:
    from signaling.app import Node
    from signaling.handlers import Session

logger = logging.getLogger(__name__)

ANSWERS = Counter("classroom_quiz_answers_total",
                  "Quiz answers received, by mode and result (stored, duplicate, or the "
                  "error code)", ["mode", "result"])
ACK_LATENCY = Histogram("classroom_quiz_ack_latency_seconds",
                        "From a quiz-answer's arrival to its quiz-ack (stored first)",
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                 1.0, 2.5))
ROUNDS = Counter("classroom_quiz_rounds_total", "Practice questions and tests opened",
                 ["mode"])

ANSWER_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MIN_DURATION, MAX_DURATION = msgs.MIN_DURATION, msgs.MAX_DURATION


def _err(code: ErrorCode, message: str) -> ClassroomError:
    return ClassroomError(code, message)


def responder_of(claims: Claims) -> str:
    return f"{claims.role.value}:{claims.sub}"


def public_round(rnd: dict[str, Any]) -> dict[str, Any]:
    revealed = rnd.get("revealed_at") is not None
    return {
        "round_id": rnd["round_id"], "mode": rnd["mode"], "title": rnd.get("title", ""),
        "questions": [qmod.public_question(q, revealed) for q in rnd["questions"]],
        "opened_at": rnd["opened_at"], "closes_at": rnd.get("closes_at"),
        "closed_at": rnd.get("closed_at"), "revealed_at": rnd.get("revealed_at"),
        "state": "closed" if rnd.get("closed_at") is not None else "open",
    }


def public_answer(record: dict[str, Any], rnd: dict[str, Any] | None) -> dict[str, Any]:
    out = {k: record.get(k) for k in ("answer_id", "round_id", "question_id", "received_at")}
    if record.get("tally") is not None:
        out["tally"] = record["tally"]
    else:
        out["value"] = record.get("value")
    if rnd is not None and rnd.get("revealed_at") is not None:
        out.update(correct=record["correct"], judged=record["total"], score=record["score"])
    return out


def ack_of(record: dict[str, Any], duplicate: bool) -> dict[str, Any]:
    body = public_answer(record, None)
    body.update(type="quiz-ack", duplicate=duplicate)
    return body


def build_tally(rnd: dict[str, Any], answers: list[dict[str, Any]],
                rooms: dict[str, dict[str, Any]], online: set[str], version: int
                ) -> dict[str, Any]:
    """The teacher's live view: per option, per classroom, who has not answered."""
    per_q: dict[str, Any] = {}
    for q in rnd["questions"]:
        choice = q["type"] in qmod.CHOICE_TYPES
        per_q[q["id"]] = {"responses": 0, "students": 0, "classrooms": 0, "judged": 0,
                          "correct": 0,
                          "option_counts": [0] * qmod.option_count(q) if choice else None,
                          "by_classroom": [], "_answered": set()}
    qs = {q["id"]: q for q in rnd["questions"]}
    for a in sorted(answers, key=lambda a: a["received_at"]):
        entry = per_q.get(a["question_id"])
        if entry is None:
            continue
        q = qs[a["question_id"]]
        entry["responses"] += 1
        entry["judged"] += a["total"]
        entry["correct"] += a["correct"]
        if entry["option_counts"] is not None:
            for opt, n in scoring.option_counts(q, a.get("value"), a.get("tally")).items():
                entry["option_counts"][opt] += n
        if a["kind"] == "classroom":
            entry["classrooms"] += 1
            entry["_answered"].add(a["sub"])
            entry["by_classroom"].append({
                "id": a["sub"], "name": a.get("name") or a["sub"], "school": a.get("school"),
                "value": a.get("value"), "tally": a.get("tally"), "correct": a["correct"],
                "judged": a["total"], "received_at": a["received_at"]})
        else:
            entry["students"] += 1
    for entry in per_q.values():
        answered = entry.pop("_answered")
        entry["not_answered"] = [
            {"id": sub, "name": info.get("name") or sub, "school": info.get("school", "")}
            for sub, info in sorted(rooms.items(), key=lambda kv: kv[1].get("name", ""))
            if sub in online and sub not in answered]
    return {"type": "quiz-tally", "round_id": rnd["round_id"], "version": version,
            "answers": len(answers), "questions": per_q,
            "classrooms_online": len(online)}


class QuizFeature(Feature):
    name = "quiz"
    messages = msgs.MESSAGES  # signaling/quiz/messages.py

    def __init__(self, *, tally_interval: float = 0.25) -> None:
        self.tally_interval = tally_interval
        self.node: Node | None = None
        self.store: QuizStore | None = None
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._teachers: dict[str, set[Session]] = {}
        self._last_tally: dict[str, Any] = {}
        self._next_tally: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # lifecycle --------------------------------------------------------------------------
    async def start(self, node: Node) -> None:
        self.node = node
        self.store = open_quiz_store(node.config.redis_url, node.config.library)
        await self.store.start()
        try:
            for lesson, rid, closes_at in await self.store.timed_rounds():
                self._schedule_close(lesson, rid, closes_at)
        except StoreUnavailable:
            logger.warning("quiz store unavailable at start; timers set on next use")
        self._tasks.append(asyncio.get_running_loop().create_task(self._tally_loop()))

    async def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # redis-py can swallow a cancellation inside a call; the loop also checks
            # ``_closing``, and close never waits for ever on a task that ignored it
            _, stuck = await asyncio.wait(self._tasks, timeout=3)
            for task in stuck:
                logger.warning("quiz task ignored cancellation", extra={"task": task.get_name()})
        self._tasks = []
        if self.store is not None:
            await self.store.close()

    @property
    def _store(self) -> QuizStore:
        assert self.store is not None, "feature not started"
        return self.store

    # welcome / state ----------------------------------------------------------------------
    async def welcome(self, session: Session) -> dict[str, Any]:
        claims = session.claims
        assert claims is not None
        if claims.role == Role.TEACHER:
            self._teachers.setdefault(session.lesson_id, set()).add(session)
        elif claims.role == Role.CLASSROOM:
            try:
                await self._store.add_room(session.lesson_id, claims.sub, {
                    "name": session.presence.name, "school": claims.school,
                    "peer_id": session.peer_id})
            except StoreUnavailable:
                pass
        try:
            return {"quiz": await self._state(session)}
        except StoreUnavailable:
            return {"quiz": None}

    async def _state(self, session: Session) -> dict[str, Any]:
        claims = session.claims
        assert claims is not None
        now = time.time()
        rnd = await self._store.current_round(session.lesson_id)
        if rnd is not None and rnd.get("closes_at") is not None and rnd.get("closed_at") is None:
            self._schedule_close(session.lesson_id, rnd["round_id"], rnd["closes_at"])
        state: dict[str, Any] = {
            "round": public_round(rnd) if rnd else None,
            "server_time": now,
            "time_left": (max(0.0, rnd["closes_at"] - now)
                          if rnd and rnd.get("closes_at") and rnd.get("closed_at") is None
                          else None),
        }
        if claims.role == Role.TEACHER:
            state["tally"] = await self._tally(session.lesson_id, rnd) if rnd else None
        else:
            own = await self._store.answers_of(session.lesson_id, responder_of(claims))
            rounds: dict[str, dict[str, Any] | None] = {}
            mine = []
            for record in sorted(own, key=lambda r: r["received_at"]):
                rid = record["round_id"]
                if rid not in rounds:
                    rounds[rid] = rnd if rnd and rnd["round_id"] == rid else (
                        await self._store.get_round(session.lesson_id, rid))
                mine.append(public_answer(record, rounds[rid]))
            state["own_answers"] = mine
        return state

    # messages -----------------------------------------------------------------------------
    async def handle(self, session: Session, message: Any) -> None:
        if message.type == "quiz-answer":
            await self._answer(session, message)
        elif message.type == "quiz-state":
            await session.send({"type": "quiz-state", **await self._state(session)})
        elif message.type == "push-question":
            await self._push(session, message)
        elif message.type == "open-test":
            await self._open_test(session, message)
        elif message.type == "close-round":
            rnd = await self._round_or_current(session.lesson_id, message.round_id)
            if rnd.get("closed_at") is not None:
                raise _err(ErrorCode.QUESTION_CLOSED, "this round is already closed")
            await self._close(session.lesson_id, rnd, "teacher")
        elif message.type == "reveal":
            await self._reveal(session, message)

    async def _round_or_current(self, lesson: str, round_id: str | None) -> dict[str, Any]:
        if round_id:
            rnd = await self._store.get_round(lesson, round_id)
        else:
            rnd = await self._store.current_round(lesson)
        if rnd is None:
            raise _err(ErrorCode.QUESTION_UNKNOWN, "no such round in this lesson")
        return rnd

    async def _push(self, session: Session, message: msgs.PushQuestion) -> None:
        lesson = session.lesson_id
        duration = message.duration  # (its range is the message type's)
        inline, qid = message.question, message.question_id
        if (inline is None) == (qid is None):
            raise _err(ErrorCode.BAD_MESSAGE, "push-question needs question_id or question")
        qset = await self._store.get_set(lesson) or {"title": "", "questions": []}
        if inline is not None:
            try:  # its shape is checked (msgs.Question); what needs the question, here
                question = qmod.validate_question(msgspec.to_builtins(inline), "question",
                                                  default_id=f"q-{uuid.uuid4().hex[:8]}")
            except qmod.QuestionError as exc:
                raise _err(ErrorCode.QUESTION_INVALID, str(exc)) from None
            others = [q for q in qset["questions"] if q["id"] != question["id"]]
            if len(others) >= qmod.MAX_QUESTIONS:
                raise _err(ErrorCode.QUESTION_INVALID, "the question set is full")
            qset = {**qset, "questions": [*others, question]}
            await self._store.save_set(lesson, qmod.validate_set(qmod.export_set(qset)))
        else:
            question = next((q for q in qset["questions"] if q["id"] == qid), None)
            if question is None:
                raise _err(ErrorCode.QUESTION_UNKNOWN, f"no question {qid!r} in the set")
        await self._open(session, "practice", [question], duration, message.title or "")

    async def _open_test(self, session: Session, message: msgs.OpenTest) -> None:
        duration = message.duration
        qset = await self._store.get_set(session.lesson_id) or {"questions": []}
        ids = message.question_ids
        if ids is None:
            chosen = list(qset["questions"])
        else:
            if len(set(ids)) != len(ids):
                raise _err(ErrorCode.BAD_MESSAGE, "question_ids: distinct strings")
            by_id = {q["id"]: q for q in qset["questions"]}
            missing = [i for i in ids if i not in by_id]
            if missing:
                raise _err(ErrorCode.QUESTION_UNKNOWN, f"not in the set: {missing[:5]}")
            chosen = [by_id[i] for i in ids]
        if not chosen:
            raise _err(ErrorCode.QUESTION_UNKNOWN, "the test has no questions")
        await self._open(session, "test", chosen, duration, message.title or "")

    async def _open(self, session: Session, mode: str, chosen: list[dict[str, Any]],
                    duration: float | None, title: str) -> None:
        lesson = session.lesson_id
        current = await self._store.current_round(lesson)
        if current is not None and current.get("closed_at") is None:
            await self._close(lesson, current, "replaced")
        now = time.time()
        rnd = {"round_id": f"r-{uuid.uuid4().hex[:12]}", "lesson": lesson, "mode": mode,
               "title": title, "questions": chosen, "opened_at": now,
               "closes_at": now + duration if duration else None, "closed_at": None,
               "revealed_at": None, "opened_by": session.claims.sub}  # type: ignore[union-attr]
        await self._store.add_round(lesson, rnd)
        ROUNDS.labels(mode=mode).inc()
        if rnd["closes_at"] is not None:
            self._schedule_close(lesson, rnd["round_id"], rnd["closes_at"])
        await self._publish(lesson, {
            "type": "quiz-question" if mode == "practice" else "quiz-test",
            "round": public_round(rnd), "server_time": now, "at": now})
        logger.info("quiz round opened", extra={"lesson": lesson, "round": rnd["round_id"],
                                                "mode": mode})

    async def _publish(self, lesson: str, event: dict[str, Any]) -> None:
        assert self.node is not None
        await self.node.hub.store.publish(lesson, event)

    async def _close(self, lesson: str, rnd: dict[str, Any], reason: str,
                     at: float | None = None) -> dict[str, Any] | None:
        at = time.time() if at is None else at
        closed = await self._store.close_round(lesson, rnd["round_id"], at)
        handle = self._timers.pop((lesson, rnd["round_id"]), None)
        if handle is not None:
            handle.cancel()
        if closed is not None:
            await self._publish(lesson, {"type": "quiz-closed", "round_id": rnd["round_id"],
                                         "mode": rnd["mode"], "reason": reason,
                                         "closed_at": at, "at": time.time(),
                                         "server_time": time.time()})
        return closed

    def _schedule_close(self, lesson: str, rid: str, closes_at: float) -> None:
        if (lesson, rid) in self._timers or self.node is None:
            return
        delay = max(0.0, closes_at - time.time())
        self._timers[(lesson, rid)] = asyncio.get_running_loop().call_later(
            delay, lambda: self.node.spawn(self._auto_close(lesson, rid, closes_at)))

    async def _auto_close(self, lesson: str, rid: str, closes_at: float) -> None:
        self._timers.pop((lesson, rid), None)
        try:
            rnd = await self._store.get_round(lesson, rid)
            if rnd is not None and rnd.get("closed_at") is None:
                await self._close(lesson, rnd, "time", at=closes_at)
        except StoreUnavailable:
            logger.warning("could not close round %s on time; retrying", rid)
            await asyncio.sleep(1.0)
            self._schedule_close(lesson, rid, closes_at)

    async def _reveal(self, session: Session, message: msgs.Reveal) -> None:
        lesson = session.lesson_id
        rnd = await self._round_or_current(lesson, message.round_id)
        if rnd.get("closed_at") is None:
            await self._close(lesson, rnd, "reveal")
            rnd = await self._round_or_current(lesson, rnd["round_id"])
        now = time.time()
        if rnd.get("revealed_at") is None:
            rnd["revealed_at"] = now
            await self._store.update_round(lesson, rnd)
        await self._publish(lesson, {
            "type": "quiz-reveal", "round_id": rnd["round_id"], "mode": rnd["mode"],
            "questions": [qmod.public_question(q, True) for q in rnd["questions"]],
            "correct_options": {q["id"]: scoring.correct_index(q) for q in rnd["questions"]},
            "at": now, "server_time": now})

    # answers ------------------------------------------------------------------------------
    async def _answer(self, session: Session, message: msgs.QuizAnswer) -> None:
        t0 = time.perf_counter()
        mode = "unknown"
        try:
            mode, ack = await self._store_answer(session, message)
        except ClassroomError as err:
            ANSWERS.labels(mode=getattr(err, "quiz_mode", mode), result=err.code.value).inc()
            raise
        await session.send(ack)
        ANSWERS.labels(mode=mode, result="duplicate" if ack["duplicate"] else "stored").inc()
        ACK_LATENCY.observe(time.perf_counter() - t0)

    async def _store_answer(self, session: Session, message: msgs.QuizAnswer
                            ) -> tuple[str, dict[str, Any]]:
        now = time.time()
        claims = session.claims
        assert claims is not None
        lesson = session.lesson_id
        aid, rid, qid = message.answer_id, message.round_id, message.question_id
        if not ANSWER_ID.match(aid):
            raise _err(ErrorCode.ANSWER_INVALID, "answer_id: 8-64 letters, digits, - or _")
        for_room = message.classroom
        if for_room is not None and (claims.role != Role.CLASSROOM or for_room != claims.sub):
            raise _err(ErrorCode.NOT_YOUR_CLASSROOM, "you may only answer for your classroom")
        responder = responder_of(claims)
        existing = await self._store.get_answer(lesson, aid)
        if existing is not None:
            return existing["mode"], self._resend(existing, responder, rid, qid)
        rnd = await self._store.get_round(lesson, rid)
        if rnd is None:
            raise _err(ErrorCode.QUESTION_UNKNOWN, "no such round in this lesson")
        question = next((q for q in rnd["questions"] if q["id"] == qid), None)
        if question is None:
            raise _err(ErrorCode.QUESTION_UNKNOWN, f"no question {qid!r} in this round")
        mode = rnd["mode"]
        closes_at = rnd.get("closes_at")
        try:
            if closes_at is not None and now > closes_at:
                raise _err(ErrorCode.ANSWER_TOO_LATE,
                           f"the time ran out {now - closes_at:.2f}s before this answer")
            if rnd.get("closed_at") is not None:
                raise _err(ErrorCode.QUESTION_CLOSED, "the teacher has closed this question")
            value, tally = message.value, message.tally
            if (value is None) == (tally is None):
                raise _err(ErrorCode.ANSWER_INVALID, "send exactly one of value or tally")
            try:
                if tally is not None:
                    if claims.role != Role.CLASSROOM:
                        raise scoring.AnswerError("answer_invalid",
                                                  "only a classroom sends a tally")
                    tally = scoring.normalize_tally(question, tally)
                    result = scoring.score_tally(question, tally)
                else:
                    value = scoring.normalize_answer(question, value)
                    result = scoring.score_answer(question, value)
            except scoring.AnswerError as exc:
                raise _err(ErrorCode(exc.code), exc.message) from None
        except ClassroomError as err:
            err.quiz_mode = mode  # type: ignore[attr-defined]
            raise
        record = {
            "answer_id": aid, "round_id": rid, "question_id": qid, "mode": mode,
            "responder": responder, "kind": claims.role.value, "sub": claims.sub,
            "name": session.presence.name, "school": claims.school,
            "value": value, "tally": tally, "received_at": now,
            "elapsed": max(0.0, now - rnd["opened_at"]),
            "correct": result.correct, "total": result.total, "score": result.score,
        }
        status, other = await self._store.put_answer(lesson, record)
        if status == DUPLICATE and other is not None:
            return mode, self._resend(other, responder, rid, qid)
        if status == TAKEN:
            raise _err(ErrorCode.ALREADY_ANSWERED,
                       f"this question was already answered (answer_id "
                       f"{(other or {}).get('answer_id')})")
        return mode, ack_of(record, duplicate=False)

    @staticmethod
    def _resend(existing: dict[str, Any], responder: str, rid: str, qid: str
                ) -> dict[str, Any]:
        if (existing["responder"] != responder or existing["round_id"] != rid
                or existing["question_id"] != qid):
            raise _err(ErrorCode.ANSWER_ID_CONFLICT,
                       "this answer_id was used for another answer")
        return ack_of(existing, duplicate=True)

    # live tally for teachers ----------------------------------------------------------------
    async def _online(self, lesson: str) -> set[str]:
        assert self.node is not None
        peers = {p["peer_id"] for p in await self.node.hub.roster(lesson)}
        return {sub for sub, info in (await self._store.rooms(lesson)).items()
                if info.get("peer_id") in peers}

    async def _tally(self, lesson: str, rnd: dict[str, Any]) -> dict[str, Any]:
        version = await self._store.version(lesson, rnd["round_id"])
        answers = await self._store.answers(lesson, rnd["round_id"])
        return build_tally(rnd, answers, await self._store.rooms(lesson),
                           await self._online(lesson), version)

    async def _tally_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.tally_interval)
            for lesson, sessions in list(self._teachers.items()):
                live = {s for s in sessions if s.claims is not None and not s.ws.closed}
                if not live:
                    self._teachers.pop(lesson, None)
                    self._last_tally.pop(lesson, None)
                    continue
                self._teachers[lesson] = live
                try:
                    await self._send_tally(lesson, live)
                except StoreUnavailable:
                    continue
                except Exception:
                    logger.exception("quiz tally failed", extra={"lesson": lesson})

    async def _send_tally(self, lesson: str, sessions: set[Session]) -> None:
        rnd = await self._store.current_round(lesson)
        if rnd is None:
            return
        key = (rnd["round_id"], await self._store.version(lesson, rnd["round_id"]),
               frozenset(await self._online(lesson)), rnd.get("closed_at"),
               rnd.get("revealed_at"))
        fresh = [s for s in sessions if getattr(s, "_quiz_tally_key", None) != key]
        if not fresh or time.monotonic() < self._next_tally.get(lesson, 0.0):
            return
        started = time.monotonic()
        tally = await self._tally(lesson, rnd)
        # A tally reads every answer of the round: keep it under ~10 % of the loop's time
        # so a burst of thousands of answers is acknowledged first, counted a moment later.
        self._next_tally[lesson] = time.monotonic() + 9 * (time.monotonic() - started)
        for s in fresh:
            s._quiz_tally_key = key  # type: ignore[attr-defined]
            await s.send(tally)

    # HTTP ---------------------------------------------------------------------------------
    def add_routes(self, app: web.Application, node_key: web.AppKey) -> None:
        def guard(action: str):  # noqa: ANN202 - a decorator
            return authz.guard(action, lambda request: request.app[node_key].config.secret)

        @guard("GET /api/lessons/{lesson}/quiz/set")
        async def get_set(request: web.Request, claims: Claims) -> web.Response:
            lesson = request.match_info["lesson"]
            qset = await self._store.get_set(lesson) or {"title": "", "questions": []}
            return web.json_response(qmod.export_set(qset), headers={
                "Content-Disposition": f'inline; filename="quiz-{lesson}.json"'})

        async def put_set(request: web.Request, claims: Claims) -> web.Response:
            lesson = request.match_info["lesson"]
            try:
                body = await request.json(loads=decode_json)
            except (ClassroomError, ValueError, UnicodeDecodeError):  # decode_json: bad_json
                raise _err(ErrorCode.QUIZ_SET_INVALID, "the question set is not JSON") from None
            try:
                qset = qmod.validate_set(body)
            except qmod.QuestionError as exc:
                raise _err(ErrorCode.QUIZ_SET_INVALID, str(exc)) from None
            await self._store.save_set(lesson, qset)
            return web.json_response(qset)

        async def get_report(request: web.Request, claims: Claims) -> web.Response:
            lesson = request.match_info["lesson"]
            rounds = await self._store.rounds(lesson)
            answers = {r["round_id"]: await self._store.answers(lesson, r["round_id"])
                       for r in rounds}
            record = await request.app[node_key].hub.store.get_lesson(lesson)
            info = record.to_json() if record is not None else None  # title, teacher, date
            if authz.sees_answer_key(claims):
                report = build_report(lesson, rounds, answers, scope="lesson",
                                      rooms=await self._store.rooms(lesson),
                                      slot_classrooms=await timetable_classrooms(lesson),
                                      lesson_info=info)
            else:  # a classroom or a student: its own answers, keys of revealed rounds only
                mine = responder_of(claims)
                answers = {rid: [a for a in lst if a["responder"] == mine]
                           for rid, lst in answers.items()}
                report = learner_report(lesson, rounds, answers, scope=claims.role.value,
                                        me=(claims.sub, {"name": claims.name,
                                                         "school": claims.school}),
                                        lesson_info=info)
            fmt = request.query.get("format", "json")
            if request.path.endswith(".csv") or fmt == "csv":
                return web.Response(
                    body=report_csv(report).encode("utf-8"),
                    content_type="text/csv", charset="utf-8",
                    headers={"Content-Disposition":
                             f'attachment; filename="report-{lesson}.csv"'})
            return web.json_response(report)

        report_path = "/api/lessons/{lesson}/quiz/report"
        app.router.add_get("/api/lessons/{lesson}/quiz/set", get_set)
        app.router.add_put("/api/lessons/{lesson}/quiz/set",
                           guard("PUT /api/lessons/{lesson}/quiz/set")(put_set))
        app.router.add_post("/api/lessons/{lesson}/quiz/set",
                            guard("POST /api/lessons/{lesson}/quiz/set")(put_set))
        app.router.add_get(report_path, guard(f"GET {report_path}")(get_report))
        app.router.add_get(report_path + ".csv", guard(f"GET {report_path}.csv")(get_report))
