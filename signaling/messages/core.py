"""The core messages of ``/ws``: authentication, keep-alive, media negotiation, lesson state.

Every feature's messages live beside it (signaling/messages/stage.py, signaling/quiz/
messages.py, signaling/messages/recording.py); base.py says how to declare one.
"""

from typing import Annotated, ClassVar, Literal

from .base import (
    UNSET,
    ClientMessage,
    ErrorCode,
    Int,
    Meta,
    NonNegInt,
    PeerId,
    Role,
    ServerMessage,
    Str,
    Timestamp,
    UnsetType,
)
from .base import Body as _Body

MAX_SDP_BYTES = 48 * 1024
MAX_TOKEN = 4096
ALL = frozenset(Role)
T, C, S = Role.TEACHER, Role.CLASSROOM, Role.STUDENT

Purpose = Literal["publish", "subscribe", "uplink", "grid"]
"""Which media connection: teacher camera/mic (publish), the lesson (subscribe), a
classroom's camera/mic (uplink), the teacher's grid of classrooms (grid)."""
LessonState = Literal["waiting", "live", "ended"]
RoleName = Literal["teacher", "classroom", "student", "ops", "admin"]
Token = Annotated[str, Meta(max_length=MAX_TOKEN, description="a signed token (JWT)")]
LessonId = Annotated[str, Meta(max_length=128)]
MAX_HOPS = 4
"""Most `redirect`s a hello may say it followed (a page follows at most one at a time)."""


# --- client -> server ------------------------------------------------------------------------
class Hello(ClientMessage, tag="hello"):
    """Authenticate the socket; must be the first message, within 10 s."""

    roles: ClassVar = ALL
    reply: ClassVar = "`welcome`, or `error` and close 1008"
    token: Token
    lesson: LessonId | None = None
    """The page's lesson; must be the token's (default: the token's)."""
    redirected: Annotated[int, Meta(ge=0, le=MAX_HOPS)] | None = None
    """How many `redirect`s the page followed since its last `welcome`; 1 or more: this
    server accepts the socket, over its limit or not (no redirect loop)."""
    reconnect: bool | None = None
    """The page was welcomed by this server before and lost its socket: it stays here
    (placement never moves a classroom that is already placed)."""


class Ping(ClientMessage, tag="ping"):
    """Keep-alive and ordering barrier: answered after the messages sent before it."""

    roles: ClassVar = ALL
    reply: ClassVar = "`pong`"
    ts: Int | float | Str[64] | None = None
    """Echoed in the pong."""


class Refresh(ClientMessage, tag="refresh"):
    """Renew the session before its token expires (same sub, role, lesson, school)."""

    roles: ClassVar = ALL
    reply: ClassVar = "`refreshed`; another identity: `error forbidden`; a bad token: close"
    token: Token
    """The latest `session_token`, or any token of the same identity."""


class Offer(ClientMessage, tag="offer"):
    """An SDP offer for one media connection (the server answers with all its candidates)."""

    roles: ClassVar = frozenset({T, C})
    reply: ClassVar = "`answer`"
    sdp: Annotated[str, Meta(max_length=MAX_SDP_BYTES)]
    purpose: Purpose


class Ice(ClientMessage, tag="ice"):
    """A trickled ICE candidate for a media connection made by `offer`."""

    roles: ClassVar = frozenset({T, C})
    reply: ClassVar = "none (a notification); a bad candidate: `error` with `ref`"
    purpose: Purpose
    candidate: Str[1024]
    """`""` marks the end of candidates."""
    sdpMid: Str[64] | None = None  # noqa: N815 - the browser's RTCIceCandidate names
    sdpMLineIndex: Annotated[int, Meta(ge=0, le=1024)] | None = None  # noqa: N815


class StartLesson(ClientMessage, tag="start-lesson"):
    """Make the lesson live (a live lesson stays live: the reply is its state)."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`lesson` (broadcast when it changes; to the sender when already live)"


class EndLesson(ClientMessage, tag="end-lesson"):
    """End the lesson; every media connection of the lesson is closed."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`lesson` (broadcast; to the sender when already ended); before it " \
                      "started: `error lesson_not_live`"


class LowBandwidth(ClientMessage, tag="low-bandwidth"):
    """The classroom asks for at most the `low` tier while `on` (re-sent after a reconnect)."""

    roles: ClassVar = frozenset({C})
    reply: ClassVar = "`done`; a `tier` when it moves the classroom"
    on: bool


# --- bodies ----------------------------------------------------------------------------------
class LessonInfo(_Body):
    id: LessonId
    title: str = ""
    state: LessonState
    created_at: Timestamp | None = None
    started_at: Timestamp | None = None
    ended_at: Timestamp | None = None
    teacher: str = ""
    school: str = ""


MediaState = Literal["none", "new", "connecting", "connected", "disconnected", "failed",
                     "closed"]
TierName = Literal["", "high", "mid", "low", "audio"]


class Peer(_Body):
    """One roster entry."""

    peer_id: PeerId
    role: RoleName
    name: str = ""
    school: str = ""
    media_state: str = "none"
    hand: bool = False
    tier: TierName = ""
    """The classroom's video tier after its first switch; `""` before (= the top tier)."""
    joined_at: Timestamp | None = None


class IceServer(_Body):
    """An RTCIceServer for RTCPeerConnection (TURN with credentials for this peer)."""

    urls: str | list[str]
    username: str | UnsetType = UNSET
    credential: str | UnsetType = UNSET


class MediaInfo(_Body):
    publisher: bool
    """The teacher's media is flowing into the relay."""


class Limits(_Body):
    max_message_bytes: NonNegInt
    messages_per_second: float


# --- server -> client ------------------------------------------------------------------------
class Welcome(ServerMessage, tag="welcome"):
    """`hello` accepted: who you are, the lesson, and what a reconnecting page must know."""

    sent_to: ClassVar = "the socket that said hello"
    peer_id: PeerId
    role: RoleName
    lesson: LessonId
    name: str
    school: str
    lesson_state: LessonState
    lesson_info: LessonInfo
    roster: list[Peer]
    server_time: Timestamp
    ice_servers: list[IceServer]
    media: MediaInfo
    limits: Limits
    token_expires: Int
    """The session ends then unless refreshed."""
    session_token: str | UnsetType = UNSET
    """A short-lived token to `refresh` with."""
    session_expires: Int | UnsetType = UNSET
    # + each feature's fields (its WelcomeFields: docs/protocol.md lists them)


class ErrorMessage(ServerMessage, tag="error"):
    """A request failed, or something about this socket went wrong."""

    sent_to: ClassVar = "the socket whose message failed"
    code: Literal[tuple(c.value for c in ErrorCode)]  # type: ignore[valid-type]
    message: str
    ref: Str[64] | UnsetType = UNSET
    """The `type` of the message it answers, whenever that type was readable."""


class Pong(ServerMessage, tag="pong"):
    """The answer to `ping`."""

    ts: Int | float | str | None = None
    server_time: Timestamp


class Refreshed(ServerMessage, tag="refreshed"):
    """The answer to `refresh`: the session now ends at `token_expires`."""

    server_time: Timestamp
    token_expires: Int
    session_token: str | UnsetType = UNSET
    session_expires: Int | UnsetType = UNSET
    ice_servers: list[IceServer]
    """Fresh TURN credentials, for the page's next peer connection."""


class Answer(ServerMessage, tag="answer"):
    """The SDP answer to `offer`."""

    sdp: str
    purpose: Purpose


class Lesson(ServerMessage, tag="lesson"):
    """The lesson's state changed (or is resent after a store outage, or to a
    `start-lesson` / `end-lesson` that changed nothing)."""

    sent_to: ClassVar = "every socket of the lesson"
    lesson_state: LessonState
    lesson_info: LessonInfo


class Roster(ServerMessage, tag="roster"):
    """Who is in the lesson (sent when it changes)."""

    sent_to: ClassVar = "every socket of the lesson (not ops/admin observers)"
    peers: list[Peer]


class Tier(ServerMessage, tag="tier"):
    """A classroom's video tier moved (the link as the rate controller saw it)."""

    sent_to: ClassVar = "the classroom that moved and the lesson's teachers on its node"
    peer_id: PeerId
    tier: TierName
    reason: str
    """`loss`, `remb`, `rtt`, `estimate`, `cap`, `manual`, `probe_ok`, `probe_start`,
    `probe_failed`, `audio_floor`."""
    direction: Literal["up", "down"]
    rtt_ms: float | None | UnsetType = UNSET
    loss: Annotated[float, Meta(ge=0, le=1)] | None | UnsetType = UNSET


class Media(ServerMessage, tag="media"):
    """The teacher's media started or stopped flowing into the relay."""

    sent_to: ClassVar = "every socket of the lesson"
    publisher: bool


class Done(ServerMessage, tag="done"):
    """A request whose effect is not otherwise told to its sender was carried out."""

    sent_to: ClassVar = "the sender of the request"
    ref: Str[64]
    """The `type` of the request."""
    peer_id: PeerId | UnsetType = UNSET
    """The peer it acted on (`mute-classroom`, `remove-classroom`)."""


CLIENT = (Hello, Ping, Refresh, Offer, Ice, StartLesson, EndLesson, LowBandwidth)
SERVER = (Welcome, ErrorMessage, Pong, Refreshed, Answer, Lesson, Roster, Tier, Media,
          Done)
MESSAGES = CLIENT + SERVER
