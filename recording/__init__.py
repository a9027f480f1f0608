"""Lesson recording into the shared-classroom library (issue 6: not built yet).

The recorder will be one more relay subscriber that muxes the shared encoded packets.
"""
