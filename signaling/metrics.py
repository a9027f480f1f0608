"""Signaling metrics (names fixed by DESIGN.md); the relay keeps its own in media_relay."""

from prometheus_client import Counter, Gauge

LESSONS_ACTIVE = Gauge("classroom_lessons_active", "Lessons live, as this node knows them")
WS_CONNECTIONS = Gauge("classroom_ws_connections", "Open signaling WebSockets on this node")
MESSAGES = Counter(
    "classroom_signaling_messages_total", "Signaling messages received, by type", ["type"]
)
ERRORS = Counter("classroom_signaling_errors_total", "Errors sent to clients, by code", ["code"])
STORE_UP = Gauge("classroom_store_up", "1 when the lesson store answers, else 0")

# two-way lesson (signaling/stage)
STAGE_CALLS = Counter("classroom_stage_calls_total",
                      "Classrooms called on stage, by whether their uplink was up", ["uplink"])
HANDS_RAISED = Counter("classroom_hands_raised_total", "Hands raised (not counting re-raises)")
CLASSROOMS_REMOVED = Counter("classroom_classrooms_removed_total",
                             "Classrooms removed from a lesson by the teacher")
CASCADE_LINKS = Gauge("classroom_cascade_links",
                      "Cascade links up: this node pulling a lesson from its origin (edge) or "
                      "serving one to another node (origin)", ["role"])
CASCADE_LINKS_MADE = Counter("classroom_cascade_links_made_total",
                             "Cascade links this node opened to an origin (a first pull or a "
                             "re-pull after a break)")
CASCADE_LINKS_REFUSED = Counter("classroom_cascade_links_refused_total",
                                "Cascade links this node refused as origin (bad, stale or "
                                "unknown node's signature)")
