"""Headless client (aiortc) that speaks the classroom protocol: tests and load tests use it."""

from .client import ClassroomClient, ProtocolError

__all__ = ["ClassroomClient", "ProtocolError"]
