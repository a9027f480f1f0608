"""Signaling metrics (names fixed by DESIGN.md); the relay keeps its own in media_relay."""

from prometheus_client import Counter, Gauge

LESSONS_ACTIVE = Gauge("classroom_lessons_active", "Lessons live, as this node knows them")
WS_CONNECTIONS = Gauge("classroom_ws_connections", "Open signaling WebSockets on this node")
MESSAGES = Counter(
    "classroom_signaling_messages_total", "Signaling messages received, by type", ["type"]
)
ERRORS = Counter("classroom_signaling_errors_total", "Errors sent to clients, by code", ["code"])
STORE_UP = Gauge("classroom_store_up", "1 when the lesson store answers, else 0")
