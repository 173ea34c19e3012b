"""A side-by-side WebSocket fan-out benchmark: ``python -m bench.fanout``.

See docs/BENCHMARKS.md. Nothing here is imported by the server.
"""
