"""Lesson recording: the library of recorded lessons (pure library code, no signaling).

* ``recorder`` -- one more subscriber of a lesson: two typed sinks the relay attaches
  (``media_relay.tracks.KindSink``), a writer thread muxing the shared packets into
  crash-safe WebM segments (``segments``; ``recovery`` salvages a killed recording).
* ``library`` -- a node's recordings: which lessons are recorded, the packaging children,
  recovery at start, retention and quota, consent, the replay files.
* ``packager`` (``python -m recording.packager``), ``chunks``, ``transcode`` -- segments to
  HLS renditions, an MP4, posters and thumbnails; ``chapters`` -- lesson events to chapters;
  ``tracks`` -- the share and the stage, recorded beside the teacher, to ``share.mp4`` and
  ``stage.mp4`` with where they were on.
* ``catalog`` -- ``catalog.json`` and one folder per recording; ``cli`` -- ``classroom library``.

The lesson side (when to record, the ``recording-*`` messages, the HTTP routes and who may
use them) is ``signaling/recordings``.
"""
