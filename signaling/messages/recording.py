"""Recording controls (signaling/recordings/feature.py; docs/recording.md)."""

from typing import ClassVar, Literal

from .base import (
    UNSET,
    Body,
    ClientMessage,
    Id,
    Role,
    ServerMessage,
    Str,
    UnsetType,
    WelcomeFields,
)

T, C = Role.TEACHER, Role.CLASSROOM


class RecordingPause(ClientMessage, tag="recording-pause"):
    """Pause the lesson's recording (what happens meanwhile is not recorded)."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`recording` (broadcast); not recorded: `error bad_message`"


class RecordingResume(ClientMessage, tag="recording-resume"):
    """Resume the lesson's recording."""

    roles: ClassVar = frozenset({T})
    reply: ClassVar = "`recording` (broadcast); not recorded: `error bad_message`"


class RecordingConsent(ClientMessage, tag="recording-consent"):
    """The school's local teacher acknowledges the recording notice (kept with who, when)."""

    roles: ClassVar = frozenset({C, T})
    reply: ClassVar = "`recording` (broadcast); a token without a school: `error bad_message`"
    name: Str[100] | None = None
    """Who acknowledges (default: the token's name)."""


class RecordingState(Body):
    state: Literal["off", "recording", "paused"]
    recording_id: Id | None
    consent_schools: list[str] | UnsetType = UNSET
    """Schools that acknowledged the recording notice."""


class Recording(RecordingState, ServerMessage, tag="recording"):
    """The lesson's recording state changed."""

    sent_to: ClassVar = "every socket of the lesson"


class RecordingWelcome(WelcomeFields):
    recording: RecordingState | UnsetType = UNSET
    """The lesson's recording state."""
    recording_consent_required: bool | UnsetType = UNSET
    """Classroom: its school has not yet acknowledged the recording notice."""


CLIENT = (RecordingPause, RecordingResume, RecordingConsent)
SERVER = (Recording, RecordingWelcome)
MESSAGES = CLIENT + SERVER
