"""Screen-share priority: how a subscriber's tier is split between the teacher's share and
camera (docs/two-way.md). Pure: the ladder in, tier names out."""

from __future__ import annotations

from .ladder_spec import Ladder


def video_plan(ladder: Ladder, tier: str, share_active: bool) -> tuple[str | None, str | None]:
    """``(camera tier, share tier)`` for a subscriber whose rate controller chose ``tier``;
    None means that line sends nothing.

    Without a share the camera gets the tier. With one, the share gets the tier and the
    camera one tier lower; at the lowest video tier the camera is paused; on the
    audio-only tier neither is sent.
    """
    if not ladder.spec(tier).has_video:
        return None, None
    if not share_active:
        return tier, None
    below = ladder.below(tier)
    camera = below if below is not None and ladder.spec(below).has_video else None
    return camera, tier
