"""Every WebSocket message, both directions, as typed msgspec Structs (see base.py)."""

from .base import (
    UNSET,
    Body,
    ClientMessage,
    ErrorCode,
    Id,
    Int,
    Meta,
    NonNegInt,
    Num,
    PeerId,
    Registry,
    Role,
    Seconds,
    ServerMessage,
    Str,
    Timestamp,
    UnsetType,
    WelcomeFields,
)

__all__ = ["UNSET", "Body", "ClientMessage", "ErrorCode", "Id", "Int", "Meta", "NonNegInt",
           "Num", "PeerId", "Registry", "Role", "Seconds", "ServerMessage", "Str",
           "Timestamp", "UnsetType", "WelcomeFields"]
