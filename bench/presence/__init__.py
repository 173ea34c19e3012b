"""Presence benchmarks: occupancy updates under a join burst (``python -m bench.presence``)."""
