"""Load testing the quiz against a running server: ``manage.py quiz_loadtest``.

- :mod:`.http`: a small keep-alive HTTP/1.1 client on asyncio streams, a pool
  of them spread over loopback source addresses, and retry with backoff.
- :mod:`.players`: simulated players on the realtime WebSocket protocol.
- :mod:`.reconnect`: when a player retries a refused or broken connect (the quiz pages' policy).
- :mod:`.game`: the whole-game simulation (host, joins, questions) and its checks.
- :mod:`.bench`: the join benchmark, the overload run and the ranking micro-benchmark.
- :mod:`.report`: percentiles, figures and PASS/FAIL lines.

Nothing here is imported by the server.
"""
