"""Observability: Prometheus metrics (``metrics``) and their exposition at ``/metrics``
(``exposition``), JSON logs carrying the request's or connection's id (``logs``) and the
middleware that assigns it (``middleware``), health checks (``health``) and the live staff
dashboard fed over the realtime protocol itself (``dashboard``).
"""
