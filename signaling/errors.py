"""Every error the signaling surface can report, as one enum.

Handlers raise :class:`ClassroomError`; the WebSocket and HTTP edges turn it into
``{"type": "error", "code": ..., "message": ...}`` or ``{"error": {...}}`` with the
status below. Nothing else reaches a client: unexpected exceptions become ``internal``.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """Error codes of the contract, with the HTTP status each maps to."""

    BAD_JSON = "bad_json"  # frame is not a JSON object
    BAD_MESSAGE = "bad_message"  # JSON does not match the message schema
    UNKNOWN_TYPE = "unknown_type"  # no such message type
    TOO_LARGE = "too_large"  # frame over the size limit
    RATE_LIMITED = "rate_limited"  # too many messages from one socket
    NOT_AUTHENTICATED = "not_authenticated"  # a message before a successful hello
    ALREADY_AUTHENTICATED = "already_authenticated"  # a second hello
    INVALID_TOKEN = "invalid_token"  # bad signature, malformed, missing claims
    TOKEN_EXPIRED = "token_expired"
    WRONG_LESSON = "wrong_lesson"  # token is for another lesson
    FORBIDDEN = "forbidden"  # the role may not do this
    BAD_SDP = "bad_sdp"  # offer is not a usable SDP
    MEDIA_FAILED = "media_failed"  # relay could not set up the peer connection
    LESSON_NOT_FOUND = "lesson_not_found"
    LESSON_EXISTS = "lesson_exists"
    LESSON_ENDED = "lesson_ended"  # action needs a lesson that has not ended
    LESSON_NOT_LIVE = "lesson_not_live"
    NOT_FOUND = "not_found"
    STORE_UNAVAILABLE = "store_unavailable"  # Redis (or the store) is down
    # practice and tests (signaling/quiz)
    QUESTION_UNKNOWN = "question_unknown"  # no such round or question in this lesson
    QUESTION_CLOSED = "question_closed"  # the round was closed (by the teacher, or replaced)
    ANSWER_TOO_LATE = "answer_too_late"  # received after the round's closes_at (server time)
    ANSWER_INVALID = "answer_invalid"  # wrong type, option out of range, bad answer_id/tally
    ANSWER_TOO_LONG = "answer_too_long"  # text answer over 200 characters
    ALREADY_ANSWERED = "already_answered"  # another answer_id already answered this question
    ANSWER_ID_CONFLICT = "answer_id_conflict"  # answer_id reused for another question/sender
    NOT_YOUR_CLASSROOM = "not_your_classroom"  # answering for another classroom
    QUESTION_INVALID = "question_invalid"  # a pushed question does not follow the format
    QUIZ_SET_INVALID = "quiz_set_invalid"  # a malformed question set on import
    # two-way lesson (signaling/stage)
    TOO_MANY_TRACKS = "too_many_tracks"  # an uplink offer with > 1 video or > 1 audio m-line
    UPLINK_OVER_CAP = "uplink_over_cap"  # a classroom's uplink sends over its cap
    # a school's week (signaling/school)
    CONFLICT = "conflict"  # the change collides with what exists (names the other object)
    INTERNAL = "internal"

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self, 400)


_HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.NOT_AUTHENTICATED: 401,
    ErrorCode.INVALID_TOKEN: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.WRONG_LESSON: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.LESSON_NOT_FOUND: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.LESSON_EXISTS: 409,
    ErrorCode.LESSON_ENDED: 409,
    ErrorCode.LESSON_NOT_LIVE: 409,
    ErrorCode.STORE_UNAVAILABLE: 503,
    ErrorCode.MEDIA_FAILED: 502,
    ErrorCode.INTERNAL: 500,
    ErrorCode.QUESTION_UNKNOWN: 404,
    ErrorCode.QUESTION_CLOSED: 409,
    ErrorCode.ANSWER_TOO_LATE: 409,
    ErrorCode.ANSWER_TOO_LONG: 413,
    ErrorCode.ALREADY_ANSWERED: 409,
    ErrorCode.ANSWER_ID_CONFLICT: 409,
    ErrorCode.NOT_YOUR_CLASSROOM: 403,
    ErrorCode.UPLINK_OVER_CAP: 429,
    ErrorCode.CONFLICT: 409,
}


WHEN: dict[ErrorCode, str] = {
    ErrorCode.BAD_JSON: "frame or body is not a JSON object, or holds what the contract "
                        "refuses (NaN, Infinity, 1e400, an integer beyond +-2^53-1, nesting "
                        "over 32, a lone surrogate); a binary frame",
    ErrorCode.BAD_MESSAGE: "a field is missing, of the wrong type, too long, out of range or "
                           "not one of its choices (the message says which, at `$.field`)",
    ErrorCode.UNKNOWN_TYPE: "no such message type",
    ErrorCode.TOO_LARGE: "a frame over 65,536 bytes of UTF-8 (the error is sent, then the "
                         "socket is closed with 1009); a body over its limit",
    ErrorCode.RATE_LIMITED: "over 20 messages/s (burst 40) or a feature's own rate; 200 drops "
                            "close the socket (1008)",
    ErrorCode.NOT_AUTHENTICATED: "a message before `hello`; an API call without a bearer token",
    ErrorCode.ALREADY_AUTHENTICATED: "a second `hello`",
    ErrorCode.INVALID_TOKEN: "bad signature, `alg: none`, malformed, missing claims, unknown "
                             "role, non-numeric `exp`/`iat`, a lifetime over 30 days "
                             "(close 1008)",
    ErrorCode.TOKEN_EXPIRED: "`exp` passed: at `hello`, on the API, or on an open socket at "
                             "the session's expiry unless refreshed (close 1008)",
    ErrorCode.WRONG_LESSON: "the token names another lesson than the page (close 1008)",
    ErrorCode.FORBIDDEN: "the role may not send this (the authorization table), or not to "
                         "this object",
    ErrorCode.BAD_SDP: "an offer that is not SDP or lacks the media it needs; a bad ICE "
                       "candidate",
    ErrorCode.MEDIA_FAILED: "the relay could not set up the peer connection",
    ErrorCode.LESSON_NOT_FOUND: "no such lesson",
    ErrorCode.LESSON_EXISTS: "`POST /api/lessons` with a taken id",
    ErrorCode.LESSON_ENDED: "a media offer (or a call on stage) for an ended lesson",
    ErrorCode.LESSON_NOT_LIVE: "`end-lesson` before the lesson started",
    ErrorCode.NOT_FOUND: "unknown API path or object; a classroom not in the lesson",
    ErrorCode.STORE_UNAVAILABLE: "Redis is unreachable (or a store call waited 1.5 s); the "
                                 "database file is locked by another process or its disk is "
                                 "full (nothing was written); retry",
    ErrorCode.QUESTION_UNKNOWN: "no such round/question in this lesson (a `push-question` of "
                                "an id not in the set, an empty test)",
    ErrorCode.QUESTION_CLOSED: "the round was closed by the teacher / revealed / replaced",
    ErrorCode.ANSWER_TOO_LATE: "received after `closes_at` (server time)",
    ErrorCode.ANSWER_INVALID: "wrong type, option out of range, duplicate option, empty text, "
                              "bad number, bad tally, tally from a student, bad `answer_id`, "
                              "both or neither of `value` and `tally`",
    ErrorCode.ANSWER_TOO_LONG: "fill-in text over 200 characters (a number's text over 64)",
    ErrorCode.ALREADY_ANSWERED: "the sender already answered this question with another "
                                "`answer_id`",
    ErrorCode.ANSWER_ID_CONFLICT: "the `answer_id` was used by another sender or for "
                                  "another question",
    ErrorCode.NOT_YOUR_CLASSROOM: "`classroom` names another classroom (or a student sends it)",
    ErrorCode.QUESTION_INVALID: "an inline `question` of `push-question` breaks the format",
    ErrorCode.QUIZ_SET_INVALID: "a malformed question set on import",
    ErrorCode.TOO_MANY_TRACKS: "an uplink offer with more than 1 video or 1 audio m-line",
    ErrorCode.UPLINK_OVER_CAP: "a classroom's uplink sends over its cap (its video is held "
                               "back until it is under; `ref: uplink`)",
    ErrorCode.CONFLICT: "a directory/timetable change that collides with what exists: a "
                        "school that still has classrooms, a classroom of another school, "
                        "a slot overlapping another (the message names it)",
    ErrorCode.INTERNAL: "a bug: logged with its traceback; the client is told only this",
}
"""When each code is sent (docs/protocol.md's error table is generated from this)."""


class ClassroomError(Exception):
    """A failure the client is told about, by code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}
