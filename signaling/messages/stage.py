"""The two-way lesson's messages (signaling/stage/feature.py; docs/two-way-lesson.md)."""

from typing import Annotated, ClassVar, Literal

from .base import (
    UNSET,
    Body,
    ClientMessage,
    Meta,
    PeerId,
    Role,
    ServerMessage,
    Timestamp,
    UnsetType,
    WelcomeFields,
)

MAX_GRID_VIEW = 256
T, C = Role.TEACHER, Role.CLASSROOM


# --- client -> server ------------------------------------------------------------------------
class RaiseHand(ClientMessage, tag="raise-hand"):
    """Put the classroom in the hand queue (a reconnecting classroom keeps its place)."""

    roles: ClassVar = frozenset({C})
    reply: ClassVar = "`hand` (broadcast), `roster`"


class LowerHand(ClientMessage, tag="lower-hand"):
    """Take the classroom out of the hand queue."""

    roles: ClassVar = frozenset({C})
    reply: ClassVar = "`hand` (broadcast), `roster`"


class UplinkState(ClientMessage, tag="uplink-state"):
    """The classroom's camera / microphone are on or off (the teacher's tile shows it)."""

    roles: ClassVar = frozenset({C})
    reply: ClassVar = "`uplink` (broadcast) when the tile changes, else `done`"
    audio: bool
    video: bool


class GridView(ClientMessage, tag="grid-view"):
    """The classrooms the teacher's grid shows, in page order (the relay sends only them)."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`grid`"
    peers: Annotated[list[PeerId], Meta(max_length=MAX_GRID_VIEW)]


class CallOnStage(ClientMessage, tag="call-on-stage"):
    """Put a classroom on stage (its uplink goes to every classroom)."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`stage` (broadcast; `reason: already` to the sender when it is there)"
    peer_id: PeerId


class LeaveStage(ClientMessage, tag="leave-stage"):
    """Clear the stage (a classroom: only when it is the one on stage)."""

    roles: ClassVar = frozenset({T, C})
    reply: ClassVar = "`stage` (broadcast; `reason: empty` to the sender when nobody is there)"


class MuteClassroom(ClientMessage, tag="mute-classroom"):
    """Mute (or unmute) a classroom's uplink audio for everyone."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`done {peer_id}`; the classroom gets `muted`; `uplink` (broadcast) " \
                      "when its tile changes"
    peer_id: PeerId
    on: bool


class RemoveClassroom(ClientMessage, tag="remove-classroom"):
    """Close a classroom's socket (close code 4001: its page does not reconnect)."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`done {peer_id}`; the classroom gets `removed`, then close 4001"
    peer_id: PeerId


class Share(ClientMessage, tag="share"):
    """The teacher's screen share is on or off (its video m-line carries it)."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`share` (broadcast)"
    on: bool


# --- server -> client ------------------------------------------------------------------------
class Hand(ServerMessage, tag="hand"):
    """A classroom raised or lowered its hand."""

    sent_to: ClassVar = "every socket of the lesson"
    peer_id: PeerId
    raised: bool


class StageEvent(ServerMessage, tag="stage"):
    """Who is on stage (`peer_id` null: nobody)."""

    sent_to: ClassVar = "every socket of the lesson (`already`/`empty`: the sender only)"
    peer_id: PeerId | None
    name: str
    school: str
    at: Timestamp
    reason: Literal["called", "already", "teacher", "left", "empty"]
    uplink: bool | UnsetType = UNSET
    """The classroom's uplink is connected (when `peer_id` is set)."""


class ShareEvent(ServerMessage, tag="share"):
    """The teacher's screen share started or stopped."""

    sent_to: ClassVar = "every socket of the lesson"
    on: bool


class Muted(ServerMessage, tag="muted"):
    """The teacher muted (`on`) or unmuted this classroom."""

    sent_to: ClassVar = "the classroom"
    on: bool


class Removed(ServerMessage, tag="removed"):
    """The teacher removed this classroom (the socket closes with 4001)."""

    sent_to: ClassVar = "the classroom"


class UplinkTile(Body):
    """A classroom's uplink tile (the teacher's grid)."""

    peer_id: PeerId
    state: str
    """`none`, `connecting`, `active`, `inactive`, `failed`, `closed`."""
    audio: bool
    video: bool
    muted: bool


class Uplink(UplinkTile, ServerMessage, tag="uplink"):
    """A classroom's uplink tile changed (the teacher's grid)."""

    sent_to: ClassVar = "every socket of the lesson"


class OnStage(Body):
    peer_id: PeerId
    name: str
    school: str
    at: Timestamp


class RaisedHand(Body):
    peer_id: PeerId
    name: str
    school: str
    at: Timestamp
    """When it was raised (the queue's order)."""


class StageWelcome(WelcomeFields):
    stage: OnStage | None = None
    """The classroom on stage, or null."""
    hands: list[RaisedHand] = []
    """Raised hands, oldest first (classrooms present now)."""
    share: bool = False
    """The teacher's screen share is on."""
    uplinks: list[UplinkTile] | UnsetType = UNSET
    """Teacher: the present classrooms' uplink tiles."""


class Slot(Body):
    slot: Annotated[int, Meta(ge=0, le=64)]
    peer_id: PeerId


class Grid(ServerMessage, tag="grid"):
    """Which classroom each of the teacher's grid video m-lines carries."""

    sent_to: ClassVar = "the teacher (its grid connection)"
    slots: list[Slot]


CLIENT = (RaiseHand, LowerHand, UplinkState, GridView, CallOnStage, LeaveStage,
          MuteClassroom, RemoveClassroom, Share)
SERVER = (Hand, StageEvent, ShareEvent, Muted, Removed, Uplink, Grid, StageWelcome)
MESSAGES = CLIENT + SERVER
