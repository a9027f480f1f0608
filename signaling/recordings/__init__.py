"""Recording as a signaling feature: the lesson side of ``recording/`` (the library).

``feature`` records every live lesson whose teacher's media flows into this node (lesson
events, the relay's publisher), owns the ``recording-*`` messages and the ``recording``
fields of ``welcome``; ``routes`` is the library's HTTP (``/api/recordings...``, signed
replay links and media), every token checked by the authorization table (authz.guard).
``recording/`` itself imports nothing from signaling.
"""
