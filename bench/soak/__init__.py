"""``python -m bench.soak``: hold many subscribers under steady publishing for minutes; watch memory.

    python -m bench.soak --connections 1000 --minutes 5 --rate 10

It starts a daphne on a fresh SQLite database in a temporary directory (``migrate``,
``realtime_apikey create``; or targets a running server with ``--url``, ``--api-key`` and
``--server-pid``), opens ``--connections`` WebSocket connections, each subscribed to
``--subscriptions`` of ``--channels`` channels, and publishes ``--rate`` events per second over one
more connection, round-robin over the channels, for the duration. ``--churn`` connections per second
are closed and replaced meanwhile, so the disconnect and reconnect paths run too. Every
``--sample-interval`` seconds it prints a row: the server's RSS (``VmRSS`` of ``/proc/<pid>/status``),
CPU, open connections, publishes and deliveries per second, and the publish → deliver latency
(p50/p99/max) of the deliveries of that interval.

Verdict (exit status 0 on PASS, 1 on FAIL, 2 when the run could not be set up):

- **memory flat**: every sample of the last minute (the last third of shorter runs) is within
  ``--rss-tolerance`` (10 %) of the first sample after the warm-up (``--warmup``; default a fifth of
  the run, at most 60 s);
- **nothing lost**: every publish acknowledged as successful, and every subscription received every
  event published to its channel while it was subscribed (sent after its ``subscribe_success``,
  acknowledged before it closed) exactly once, and nothing twice;
- every connection opened, and none closed by the server.

Loopback only, bounded in connections, duration and rate. Nothing here imports Django: the server is
prepared with ``manage.py`` subprocesses and driven only over its socket, with the ``websockets``
client. Results of a run on this project's machine: docs/BENCHMARKS.md, "Soak".
"""
