"""What ``realtime`` keeps in the database and reads on the hot path: writes (``services``),
reads through process-local TTL caches cleared when rows change (``selectors``), and the cache
itself (``cache``). The models stay in ``realtime.models``, as Django expects.
"""
