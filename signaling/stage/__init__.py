"""双师课堂 (two-way lesson): hand queue, stage, classroom uplinks, the teacher's grid, share.

``store`` keeps what every node and every reconnecting page must agree on (memory or
Redis, one interface); ``feature`` plugs the messages of docs/two-way.md into a node;
``media`` is the glue to the relay (uplink tiles, grid slots, the stage in the relay).
"""
