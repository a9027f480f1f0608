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
}


class ClassroomError(Exception):
    """A failure the client is told about, by code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}
