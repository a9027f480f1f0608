"""One output line per feed across an origin move (media_relay/packets.py Timeline).

A node that was an edge places the origin's packets on its feed's timeline; when the
teacher moves to it, its own decoder's frames continue that line (and the other way round):
a browser drops video whose RTP timestamps jump back, so a move must never do that.
"""

from __future__ import annotations

from media_relay.packets import Timeline


def test_edge_then_local_then_edge_never_goes_back() -> None:
    line = Timeline(90_000)
    outs = []
    # B is an edge: the origin's frames (large timestamps), three tiers per frame
    for n in range(10):
        for _tier in range(3):
            outs.append(line.map(("edge", 1), 5_000_000 + 3000 * n, strict=False))
    assert outs[0] == outs[1] == outs[2]  # the tiers of one frame keep one timestamp
    # the teacher moves to B: its own publisher's timestamps start near 0
    for n in range(10):
        outs.append(line.map(7, 1000 + 3000 * n))
    # and away again: a new link from another origin
    for n in range(5):
        outs.append(line.map(("edge", 2), 90 + 3000 * n, strict=False))
    assert outs == sorted(outs), "the output line went back"
    assert outs[30] > outs[29] and outs[30] - outs[29] < 90_000  # no jump ahead either
    assert len(set(outs[30:40])) == 10  # local frames strictly increasing
    assert outs[40] > outs[39] and outs[40] - outs[39] < 90_000


def test_a_local_source_is_never_taken_for_an_edge_generation() -> None:
    line = Timeline(90_000)
    first = line.map(1, 100)
    edge = line.map(("edge", 1), 10, strict=False)  # generation 1 is not source 1
    assert edge > first
