"""A lesson inside the relay: its feeds, its publisher (replaceable), subscribers, uplinks
and grids; closing it closes all of them.

Children announce, parents forget: every child gets what it uses (the feeds in
:class:`~.lesson_media.LessonMedia`, the config, callbacks) and an ``on_closed`` callback,
:meth:`RelayLesson.forget`; none of them holds the lesson. What changes for several
children at once (the share, the stage, a school's cap, the uplinks a grid can show) the
lesson pushes to each of them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .config import RelayConfig
from .lesson_media import AudioFanout, LessonMedia
from .node_load import NodeLoad

if TYPE_CHECKING:
    from .feed import VideoFeed
    from .grid import Grid
    from .publisher import Publisher
    from .rendition import Rendition
    from .stage import Stage
    from .subscriber import Subscriber
    from .uplink import Uplink

    Peer = Publisher | Subscriber | Uplink | Grid

__all__ = ["AudioFanout", "RelayLesson"]

logger = logging.getLogger(__name__)


class RelayLesson:
    """Holds one lesson's media objects; closing it closes all of them.

    The renditions and the subscribers belong to the lesson, not to the publisher, so a
    teacher who reconnects replaces only the publisher: classrooms keep their connections
    and get a keyframe from the new source. ``rendition`` is the top tier (always encoded
    while media flows; the recorder attaches to it); lower tiers are created on first use
    and fed only while a subscriber is on them.

    Two-way lesson: ``uplinks`` (classrooms' cameras, in join order), ``grids`` (the
    teacher's grid connections), ``stage`` (the classroom on stage) and ``share`` (the
    teacher's second video, a feed of its own; ``share_active`` while the teacher's
    publish carries it).

    Built with what the relay remembers for it: the node's ``node_load`` (shared by every
    lesson of a Relay), the school ``caps`` (the relay's dict for this lesson: a cap set
    later is seen here), who is on ``stage``, the teacher's last ``share_on`` and whether
    the lesson is ``on_air`` (classrooms get media only then: :meth:`set_on_air`).
    """

    def __init__(self, lesson_id: str, config: RelayConfig, *,
                 node_load: NodeLoad | None = None, caps: dict[str, int] | None = None,
                 stage: str | None = None, share_on: bool | None = None,
                 on_air: bool = True) -> None:
        self.lesson_id = lesson_id
        self.config = config
        self.node_load = node_load or NodeLoad(config.busy_lag, config.busy_hold)
        self.ladder = config.ladder
        self.media = LessonMedia(config, on_stage_change=self._budget_changed)
        self.publisher: Publisher | None = None
        self.subscribers: dict[str, Subscriber] = {}
        self.uplinks: dict[str, Uplink] = {}
        self.grids: dict[str, Grid] = {}
        self.has_share_line = False
        """The teacher's publish has a second video m-line (the share's)."""
        self.share_on: bool | None = share_on
        """The teacher's last ``share {on}`` (Relay.set_share); None before any: then the
        m-line alone decides (a page that publishes the share's m-line only while sharing)."""
        self.caps: dict[str, int] = caps if caps is not None else {}
        """School -> bit/s shared by that school's subscribers in this lesson."""
        self.closed = False
        self._sources = 0
        self.media.stage.set(stage)
        self.media.on_air = on_air

    # ---- the feeds ---------------------------------------------------------------------
    @property
    def camera(self) -> VideoFeed:
        return self.media.camera

    @property
    def rendition(self) -> Rendition:
        """The camera's top tier (the recorder's)."""
        return self.media.camera.renditions[self.ladder.top]

    @property
    def audio(self) -> AudioFanout:
        return self.media.audio

    @property
    def stage(self) -> Stage:
        return self.media.stage

    @property
    def share(self) -> VideoFeed:
        """The teacher's share (screen/slides), created on first use."""
        return self.media.share

    @property
    def share_active(self) -> bool:
        return self.media.share_active

    def next_source(self) -> int:
        self._sources += 1
        return self._sources

    def tiers_in_use(self) -> list[str]:
        return self.media.camera.tiers_in_use()

    # ---- children joining and leaving (event loop) --------------------------------------
    def set_publisher(self, publisher: Publisher) -> Publisher | None:
        """The teacher's new publish (answered); returns the one it replaces."""
        old, self.publisher = self.publisher, publisher
        self.set_share_line(publisher.has_share)
        stage = self.stage  # the origin now: the stage is made here again
        stage.set_remote(False, self.uplinks.get(stage.peer_id) if stage.peer_id else None)
        return old

    def add_subscriber(self, subscriber: Subscriber) -> None:
        """An answered subscriber: counted in its school's cap from now on."""
        self.subscribers[subscriber.peer_id] = subscriber
        self.apply_caps(subscriber.school)

    def add_grid(self, grid: Grid) -> None:
        self.grids[grid.peer_id] = grid

    def add_uplink(self, uplink: Uplink) -> None:
        self.uplinks[uplink.peer_id] = uplink
        if self.stage.peer_id == uplink.peer_id:
            self.stage.bind(uplink)
        for grid in list(self.grids.values()):
            grid.assign()

    def remove_uplink(self, uplink: Uplink) -> None:
        if self.uplinks.get(uplink.peer_id) is not uplink:
            return
        del self.uplinks[uplink.peer_id]
        for slot in list(uplink.slots):
            slot.assign(None)
        if self.stage.uplink is uplink:
            self.stage.bind(None)
        for grid in list(self.grids.values()):
            grid.assign()

    def forget(self, peer: Peer) -> None:
        """A child closes (its ``on_closed``): it is no longer one of the lesson's. A peer
        the lesson does not hold (replaced meanwhile, or never answered) changes nothing."""
        if self.closed:
            return
        peer_id = peer.peer_id
        if self.publisher is peer:
            self.publisher = None
        elif self.subscribers.get(peer_id) is peer:
            subscriber = self.subscribers.pop(peer_id)
            self.apply_caps(subscriber.school)  # the others' shares grow
        elif self.uplinks.get(peer_id) is peer:
            self.remove_uplink(self.uplinks[peer_id])
        elif self.grids.get(peer_id) is peer:
            del self.grids[peer_id]

    def connected(self, peer: Peer) -> None:
        """A peer's connection is up: a subscriber or grid the lesson holds starts
        receiving (the others need nothing)."""
        peer_id = peer.peer_id
        if self.subscribers.get(peer_id) is peer:
            self.subscribers[peer_id].attach()
        elif self.grids.get(peer_id) is peer:
            self.grids[peer_id].attach()

    # ---- pushed state (event loop) --------------------------------------------------------
    def set_stage(self, uplink_peer_id: str | None) -> None:
        """Put the uplink on stage (it may connect later), or clear it."""
        self.stage.set(uplink_peer_id, self.uplinks.get(uplink_peer_id)
                       if uplink_peer_id else None)

    def set_share_line(self, present: bool) -> None:
        """The teacher (re)published, with or without the share's m-line."""
        self.has_share_line = present
        self._update_share()

    def set_share_on(self, on: bool) -> None:
        """The teacher started or stopped sharing on the m-line its publish keeps (the page
        swaps the track in place: no re-publish, the camera does not blink)."""
        self.share_on = on
        self._update_share()

    def _update_share(self) -> None:
        self.set_share_active(self.has_share_line and self.share_on is not False)

    def set_share_active(self, active: bool) -> None:
        """A share is (or no longer is) sent: re-split every subscriber's tier between
        share and camera."""
        if active == self.media.share_active:
            return
        self.media.share_active = active
        for subscriber in list(self.subscribers.values()):
            subscriber.route("share")
        if active and self.publisher is not None:
            # frames that came before the share was on were not decoded: start from a
            # keyframe now (a still screen may not send another for seconds)
            self.publisher.request_share_keyframe()

    def set_on_air(self, on: bool) -> None:
        """The lesson went live (or left it): every subscriber starts receiving, from a
        keyframe of each of its feeds at once, or stops receiving anything."""
        if on == self.media.on_air:
            return
        self.media.on_air = on
        for subscriber in list(self.subscribers.values()):
            subscriber.on_air_changed()

    @property
    def on_air(self) -> bool:
        return self.media.on_air

    def _budget_changed(self) -> None:
        """The stage got or lost its uplink: what each subscriber's link carries changed."""
        for subscriber in list(self.subscribers.values()):
            subscriber.budget_changed()

    def cap_share(self, school: str | None) -> int | None:
        """The school's cap split evenly among its subscribers in this lesson."""
        if not school or school not in self.caps:
            return None
        count = sum(1 for s in self.subscribers.values() if s.school == school)
        return self.caps[school] // max(1, count)

    def apply_caps(self, school: str | None) -> None:
        """The school's cap or its subscribers changed: each gets its new share."""
        if not school:
            return
        share = self.cap_share(school)
        for subscriber in list(self.subscribers.values()):
            if subscriber.school == school:
                subscriber.set_cap(share)

    def tick(self, now: float) -> None:
        """Rate control for every subscriber (one that fails is logged, the others go on)."""
        for subscriber in list(self.subscribers.values()):
            try:
                subscriber.tick(now)
            except Exception:
                logger.exception("rate control tick failed for %s", subscriber.peer_id)

    # ---- lifetime ------------------------------------------------------------------------
    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            await publisher.close()
        subscribers = list(self.subscribers.values())
        self.subscribers.clear()
        for subscriber in subscribers:
            await subscriber.close()
        for peer in [*self.uplinks.values(), *self.grids.values()]:
            await peer.close()
        self.uplinks.clear()
        self.grids.clear()
        await self.media.close()

    def stats(self) -> dict:
        camera = self.media.camera
        return {
            "lesson_id": self.lesson_id,
            "publisher": self.publisher.stats() if self.publisher else None,
            "renditions": [r.stats() for name in self.ladder.names
                           if (r := camera.renditions.get(name)) is not None],
            "tiers_in_use": self.tiers_in_use(),
            "h264": camera.h264_stats(),
            "caps": dict(self.caps),
            "audio_packets": self.media.audio.packets,
            "subscribers": {pid: s.stats() for pid, s in self.subscribers.items()},
            "uplinks": [u.stats() for u in self.uplinks.values()],
            "grids": {pid: g.stats() for pid, g in self.grids.items()},
            "on_air": self.media.on_air,
            "stage": self.stage.stats(),
            "share": {"active": self.media.share_active,
                      "renditions": self.media.share_stats()},
        }
