"""``realtime`` settings: one ``REALTIME`` dict, read lazily through typed properties.

Nothing reads ``settings.REALTIME`` at import time, so ``override_settings``
works everywhere. Every key and its default is listed in :data:`DEFAULTS`;
:mod:`realtime.checks` validates the values (ids ``realtime.E0xx``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Auth modes tried, in order, for each operation (DESIGN §6). A namespace's
    # own publish/subscribe modes replace the defaults when set.
    "CONNECTION_AUTH_MODES": ["API_KEY"],
    "DEFAULT_PUBLISH_AUTH_MODES": ["API_KEY"],
    "DEFAULT_SUBSCRIBE_AUTH_MODES": ["API_KEY"],
    # Mode name -> dotted path of a BaseAuthorizer subclass.
    "AUTHORIZERS": {
        "API_KEY": "realtime.auth.api_key.ApiKeyAuthorizer",
        "USER": "realtime.auth.user.UserAuthorizer",
        "OIDC": "realtime.auth.oidc.OidcAuthorizer",
        "CUSTOM": "realtime.auth.custom.CustomAuthorizer",
        "IAM": "realtime.auth.iam.IamAuthorizer",
    },
    # USER: cookie-authenticated WebSockets must come from these origins (or the
    # request's own host): cross-site WebSocket hijacking is refused.
    "USER_ALLOWED_ORIGINS": [],
    # OIDC: JWTs verified against an issuer's JWKS (Cognito-style id/access tokens).
    "OIDC": {
        "ISSUER": None,
        "JWKS_URL": None,  # default: ISSUER + "/.well-known/jwks.json"
        "AUDIENCES": [],  # accepted aud / client_id values; empty: not checked
        "CLIENT_ID_REGEX": None,  # AppSync's appIdClientRegex
        "TOKEN_USE": ["id", "access"],
        "ALGORITHMS": ["RS256"],
        "LEEWAY": 60,  # seconds of clock skew
        "JWKS_CACHE_TTL": 300,
    },
    # CUSTOM: AppSync's Lambda authorizer, as a dotted-path callable.
    "CUSTOM_AUTHORIZER": {
        "HANDLER": None,
        "TIMEOUT": 10.0,
        "CACHE_TTL": 300.0,  # default result TTL; the callable's ttl_override wins
    },
    # IAM: SigV4 verified against access keys stored in the admin.
    "IAM": {
        "REGION": "us-east-1",
        "SERVICE": "appsync",
        "MAX_CLOCK_SKEW": 300,
    },
    # PROTOCOL §3.2/§3.3: ka at most every 60 s; clients drop after the timeout.
    "KEEPALIVE_INTERVAL": 60.0,
    "CONNECTION_TIMEOUT_MS": 300_000,
    # PROTOCOL §7.
    "MAX_SUBSCRIPTIONS_PER_CONNECTION": 200,
    "MAX_EVENTS_PER_PUBLISH": 5,
    "MAX_EVENT_SIZE": 240 * 1024,
    # Largest WebSocket text frame read; five maximal events, JSON-escaped, fit.
    "MAX_MESSAGE_SIZE": 2_621_440,
    # WebSocket connections accepted by the whole site (beyond: connection_error
    # LimitExceededError, which clients retry with backoff; shared by every
    # process through LIMITS_REDIS_URL, else per process; AppSync: 2,000/s), and
    # failed authorizations per client address, per process, before it is
    # refused outright for the rest of the window (credential guessing). None
    # turns either off. A rate is a count per s, m or h, with an optional
    # multiple and decimals, and an optional burst (default: one period's
    # count): "2000/s", "100/m", "5/10s", "0.5/s", "2000/s burst 400"
    # (realtime.core.rates.parse_limit, realtime.E007).
    "CONNECT_RATE": "2000/s",
    "AUTH_FAILURE_RATE": "100/m",
    # New WebSocket connections per client address (None: no limit of its own).
    "CONNECT_RATE_PER_CLIENT": None,
    # Rates of operations, each namespace's unless it sets its own in the admin
    # (beyond: LimitExceededException; PROTOCOL §7 lists AppSync's figures):
    # publishes of one WebSocket connection (AppSync: 25/s, unverified; the
    # burst lets a client pipeline 100 publishes at once, as the fan-out
    # benchmark's publisher does);
    # subscribes of one connection (AppSync documents none: a client may take
    # its 200 subscriptions at once, then 10/s); events published to one
    # namespace by clients over HTTP and WebSocket, every process together
    # (AppSync: 10,000/s inbound per API, adjustable). A burst below
    # MAX_EVENTS_PER_PUBLISH refuses every publish of more events than it.
    "PUBLISH_RATE_PER_CONNECTION": "25/s burst 100",
    "SUBSCRIBE_RATE_PER_CONNECTION": "10/s burst 200",
    "INBOUND_EVENT_RATE": "10000/s",
    # Seconds of INBOUND_EVENT_RATE a process leases from LIMITS_REDIS_URL at once
    # and spends without a round trip per publish (realtime.core.allowance), and
    # at most that fraction of its burst: 0.05 of "10000/s" is 500 events. With
    # N processes a namespace admits at most N slices more, or fewer, than its
    # limit in any window (10,000/s on 2 processes: ±1,000 of a 10,000 burst);
    # over time the rate is exact. A slice under 10 events is not leased (each
    # publish asks Redis, exactly); 0 turns leasing off.
    "INBOUND_EVENT_LEASE": 0.05,
    # Where the shared rate limits count (realtime.auth.limits.rate_limiter):
    # a Redis URL makes every process count against the same budgets (one
    # round trip per decision); None counts in each process. Seconds Redis may
    # take before a decision falls back to this process's counts. Each Redis URL
    # here may name a master behind Sentinel (redis+sentinel://…,
    # realtime.core.redis_urls; realtime.E023/E024 check them).
    "LIMITS_REDIS_URL": None,
    "LIMITS_REDIS_TIMEOUT": 1.0,
    # The front door (realtime.transport.frontdoor): admission before Django for
    # the routes a crowd hits. New work is refused at once (429, Retry-After)
    # while as many gated requests are under way as the process's adaptive
    # limit allows (MIN_IN_FLIGHT to MAX_IN_FLIGHT): it shrinks while even the
    # fastest recent request waited more than MAX_QUEUE_DELAY seconds (a
    # standing queue), and grows back otherwise; WebSocket connects wait while
    # the event loop runs later than MAX_LOOP_LAG seconds
    # (realtime.transport.overload). Client addresses come
    # from TRUSTED_PROXY_HEADER ("X-Forwarded-For") only when the peer is in
    # TRUSTED_PROXIES (CIDRs). The limit starts at MAX_IN_FLIGHT: 64 keeps the
    # queue a storm lets in before the limit adapts short (at 256 the first
    # joins of a 10x storm waited 2-3 s, and goodput fell with them;
    # docs/BENCHMARKS.md, "Crowd-proof entry"). Under daphne, a new connection is
    # refused (429, then closed) while the process holds MAX_DESCRIPTOR_SHARE of
    # its file-descriptor limit (RLIMIT_NOFILE) or more: the rest stays for the
    # database, the files and the work already admitted (0: no such refusal).
    "FRONT_DOOR": {
        "MIN_IN_FLIGHT": 4,
        "MAX_IN_FLIGHT": 64,
        "MAX_LOOP_LAG": 0.2,
        "MAX_QUEUE_DELAY": 0.5,
        "MAX_DESCRIPTOR_SHARE": 0.8,
        "TRUSTED_PROXY_HEADER": None,
        "TRUSTED_PROXIES": [],
    },
    # HTTP requests' threads kept idle between requests (each request leases one
    # for its sync work alone and gives it back; realtime.transport.request_threads,
    # realtime.E028): beyond this many, a request's thread ends with it; 0 keeps
    # none. As many as the HTTP requests the process serves at once (the front door
    # admits FRONT_DOOR["MAX_IN_FLIGHT"] gated ones) and no request starts a thread.
    # With CONN_MAX_AGE above 0, each idle thread keeps its database connection open.
    "IDLE_REQUEST_THREADS": 64,
    # Frames queued for one connection before it is closed as too slow (DESIGN §5).
    "OUTBOUND_BUFFER_SIZE": 1000,
    # Under daphne and uvicorn, write each event's pre-built frame straight to the
    # connection's transport (realtime.delivery.direct); False: every frame
    # through the server's ASGI send, as under any other server.
    "DIRECT_WRITES": True,
    # Seconds a namespace or API key lookup is cached in each process.
    "NAMESPACE_CACHE_TTL": 5.0,
    "API_KEY_CACHE_TTL": 5.0,
    # Seconds an on_publish / on_subscribe handler may run.
    "HANDLER_TIMEOUT": 5.0,
    # Module name autodiscovered in every installed app for handler registrations.
    "HANDLER_MODULE": "realtime_handlers",
    # GET /metrics with "Authorization: Bearer <token>" (staff users need none);
    # None: staff only, or anyone while DEBUG is on (realtime.W002).
    "METRICS_TOKEN": None,
    # Seconds between the live dashboard's snapshots (realtime.ops.dashboard); 0 turns it off.
    "DASHBOARD_INTERVAL": 1.0,
    # Who publishes what realtime.publish_on_commit wrote (realtime.operations.relay):
    # "inprocess", every server process (the embedded default: one process on
    # SQLite); "external", `manage.py realtime_relay` beside the servers (scaled
    # out, where the channel layer reaches every process).
    "RELAY": "inprocess",
    # Seconds between the relay's looks at the table when nothing woke it (a
    # commit in its own process and, on PostgreSQL, a NOTIFY wake it at once).
    "RELAY_POLL": 1.0,
    # Rows the relay takes per round.
    "RELAY_BATCH": 500,
    # Occupancy (realtime.presence, PROTOCOL §12): subscriptions and connections per
    # channel key, counted across processes. Off: no counting, presence channels refused.
    "OCCUPANCY": True,
    # Seconds: at most one update per presence channel per interval (and this
    # process's counts reach the others within a quarter of it).
    "OCCUPANCY_INTERVAL": 1.0,
    # Seconds after which a process that stopped refreshing (killed, say) no longer
    # counts toward occupancy anywhere.
    "OCCUPANCY_PROCESS_TTL": 15.0,
    # Seconds a WebSocket connection may stay open before the server closes it
    # (AppSync: 24 h; PROTOCOL §12); None: no limit.
    "MAX_CONNECTION_AGE": 24 * 3600.0,
    # History of namespaces with history_size > 0 (PROTOCOL §12, "History"): a Redis URL
    # keeps it in Redis Streams shared by every process; None keeps it in this process.
    "HISTORY_REDIS_URL": None,
    # Publications one subscribe may recover; beyond, recovered is false.
    "HISTORY_RECOVER_LIMIT": 300,
    # Seconds the last position of each subscription of a closed connection is kept,
    # so a client that re-subscribes with the same id gets what it missed.
    "HISTORY_RESUME_WINDOW": 120.0,
    # With a channel layer that stays in its process (the in-memory default),
    # only the writer's subscribers can receive a row's events: a relay leaves
    # the rows of another relaying process alone for this many seconds (then
    # their writer is taken for gone: a crash, a restart).
    "RELAY_ADOPT_AFTER": 10.0,
}


class RealtimeSettings:
    """Typed, lazily read view of ``settings.REALTIME`` over :data:`DEFAULTS`."""

    def _get(self, name: str) -> Any:
        user = getattr(settings, "REALTIME", None) or {}
        return user.get(name, DEFAULTS[name])

    def user_keys(self) -> set[str]:
        return set((getattr(settings, "REALTIME", None) or {}).keys())

    @property
    def connection_auth_modes(self) -> list[str]:
        return list(self._get("CONNECTION_AUTH_MODES"))

    @property
    def default_publish_auth_modes(self) -> list[str]:
        return list(self._get("DEFAULT_PUBLISH_AUTH_MODES"))

    @property
    def default_subscribe_auth_modes(self) -> list[str]:
        return list(self._get("DEFAULT_SUBSCRIBE_AUTH_MODES"))

    @property
    def authorizers(self) -> dict[str, str]:
        merged = dict(DEFAULTS["AUTHORIZERS"])
        merged.update(self._get("AUTHORIZERS"))
        return merged

    def _section(self, name: str) -> dict[str, Any]:
        merged = dict(DEFAULTS[name])
        merged.update(self._get(name) or {})
        return merged

    @property
    def user_allowed_origins(self) -> list[str]:
        return list(self._get("USER_ALLOWED_ORIGINS"))

    @property
    def oidc(self) -> dict[str, Any]:
        return self._section("OIDC")

    @property
    def custom_authorizer(self) -> dict[str, Any]:
        return self._section("CUSTOM_AUTHORIZER")

    @property
    def iam(self) -> dict[str, Any]:
        return self._section("IAM")

    @property
    def connect_rate(self) -> str | None:
        value = self._get("CONNECT_RATE")
        return str(value) if value else None

    @property
    def connect_rate_per_client(self) -> str | None:
        value = self._get("CONNECT_RATE_PER_CLIENT")
        return str(value) if value else None

    @property
    def publish_rate_per_connection(self) -> str | None:
        value = self._get("PUBLISH_RATE_PER_CONNECTION")
        return str(value) if value else None

    @property
    def subscribe_rate_per_connection(self) -> str | None:
        value = self._get("SUBSCRIBE_RATE_PER_CONNECTION")
        return str(value) if value else None

    @property
    def inbound_event_rate(self) -> str | None:
        value = self._get("INBOUND_EVENT_RATE")
        return str(value) if value else None

    @property
    def inbound_event_lease(self) -> float:
        return float(self._get("INBOUND_EVENT_LEASE"))

    @property
    def auth_failure_rate(self) -> str | None:
        value = self._get("AUTH_FAILURE_RATE")
        return str(value) if value else None

    @property
    def front_door(self) -> dict[str, Any]:
        return self._section("FRONT_DOOR")

    def front_door_option(self, name: str) -> Any:
        """``front_door[name]`` without merging the whole section: read on every connect and gated request."""
        return (self._get("FRONT_DOOR") or {}).get(name, DEFAULTS["FRONT_DOOR"][name])

    @property
    def limits_redis_url(self) -> str | None:
        value = self._get("LIMITS_REDIS_URL")
        return str(value) if value else None

    @property
    def limits_redis_timeout(self) -> float:
        return float(self._get("LIMITS_REDIS_TIMEOUT"))

    @property
    def keepalive_interval(self) -> float:
        return float(self._get("KEEPALIVE_INTERVAL"))

    @property
    def connection_timeout_ms(self) -> int:
        return int(self._get("CONNECTION_TIMEOUT_MS"))

    @property
    def max_subscriptions_per_connection(self) -> int:
        return int(self._get("MAX_SUBSCRIPTIONS_PER_CONNECTION"))

    @property
    def max_events_per_publish(self) -> int:
        return int(self._get("MAX_EVENTS_PER_PUBLISH"))

    @property
    def max_event_size(self) -> int:
        return int(self._get("MAX_EVENT_SIZE"))

    @property
    def max_message_size(self) -> int:
        return int(self._get("MAX_MESSAGE_SIZE"))

    @property
    def outbound_buffer_size(self) -> int:
        return int(self._get("OUTBOUND_BUFFER_SIZE"))

    @property
    def idle_request_threads(self) -> int:
        return int(self._get("IDLE_REQUEST_THREADS"))

    @property
    def direct_writes(self) -> bool:
        return bool(self._get("DIRECT_WRITES"))

    @property
    def namespace_cache_ttl(self) -> float:
        return float(self._get("NAMESPACE_CACHE_TTL"))

    @property
    def api_key_cache_ttl(self) -> float:
        return float(self._get("API_KEY_CACHE_TTL"))

    @property
    def handler_timeout(self) -> float:
        return float(self._get("HANDLER_TIMEOUT"))

    @property
    def handler_module(self) -> str:
        return str(self._get("HANDLER_MODULE"))

    @property
    def metrics_token(self) -> str | None:
        token = self._get("METRICS_TOKEN")
        return str(token) if token else None

    @property
    def dashboard_interval(self) -> float:
        return float(self._get("DASHBOARD_INTERVAL"))

    @property
    def relay(self) -> str:
        return str(self._get("RELAY"))

    @property
    def relay_poll(self) -> float:
        return float(self._get("RELAY_POLL"))

    @property
    def relay_batch(self) -> int:
        return int(self._get("RELAY_BATCH"))

    @property
    def history_redis_url(self) -> str | None:
        url = self._get("HISTORY_REDIS_URL")
        return str(url) if url else None

    @property
    def history_recover_limit(self) -> int:
        return int(self._get("HISTORY_RECOVER_LIMIT"))

    @property
    def history_resume_window(self) -> float:
        return float(self._get("HISTORY_RESUME_WINDOW"))

    @property
    def relay_adopt_after(self) -> float:
        return float(self._get("RELAY_ADOPT_AFTER"))

    @property
    def occupancy(self) -> bool:
        return bool(self._get("OCCUPANCY"))

    @property
    def occupancy_interval(self) -> float:
        return float(self._get("OCCUPANCY_INTERVAL"))

    @property
    def occupancy_process_ttl(self) -> float:
        return float(self._get("OCCUPANCY_PROCESS_TTL"))

    @property
    def max_connection_age(self) -> float | None:
        value = self._get("MAX_CONNECTION_AGE")
        return None if value is None else float(value)


realtime_settings = RealtimeSettings()
