"""Namespaces, API keys and IAM credentials (managed in the admin), and publications waiting for the relay."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from realtime.core.paths import NAMESPACE_NAME
from realtime.core.rates import parse_limit


class AuthMode(models.TextChoices):
    """How a request may be authorized (DESIGN §6)."""

    API_KEY = "API_KEY", "API key"
    USER = "USER", "Django user"
    OIDC = "OIDC", "OpenID Connect / JWT"
    CUSTOM = "CUSTOM", "Custom authorizer"
    IAM = "IAM", "IAM (SigV4)"


# RegexValidator searches: without \A, "has space" or "a/b" would pass on their last word.
namespace_name_validator = RegexValidator(
    r"\A" + NAMESPACE_NAME.pattern.removesuffix(r"\Z") + r"\Z",
    "1-50 letters, digits and hyphens, starting and ending with a letter or digit.",
)


def validate_auth_modes(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(mode, str) for mode in value):
        raise ValidationError("A list of auth mode names is expected.")
    unknown = [mode for mode in value if mode not in AuthMode.values]
    if unknown:
        raise ValidationError(f"Unknown auth mode(s): {', '.join(unknown)}.")


def validate_limit(value: str) -> None:
    """A rate as every rate setting reads (``"25/s"``, ``"10000/s burst 2000"``); empty is allowed."""
    if value:
        try:
            parse_limit(value)
        except ValueError as error:
            raise ValidationError(str(error)) from error


def _rate_field(what: str) -> models.CharField[str, str]:
    return models.CharField(
        max_length=40,
        blank=True,
        validators=[validate_limit],
        help_text=f'{what}, e.g. "25/s" or "25/s burst 50"; empty means the API default.',
    )


class Namespace(models.Model):
    """A channel namespace: the first segment of every channel path in it.

    Channels inside a namespace are created on first use; only the namespace is
    stored. Empty auth-mode lists fall back to the API defaults in
    ``REALTIME["DEFAULT_PUBLISH_AUTH_MODES"]`` / ``["DEFAULT_SUBSCRIBE_AUTH_MODES"]``.
    """

    name = models.CharField(max_length=50, unique=True, validators=[namespace_name_validator])
    description = models.CharField(max_length=200, blank=True)
    publish_auth_modes = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_auth_modes],
        help_text="Modes allowed to publish; empty means the API defaults.",
    )
    subscribe_auth_modes = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_auth_modes],
        help_text="Modes allowed to subscribe; empty means the API defaults.",
    )
    publish_groups = models.JSONField(
        default=list,
        blank=True,
        help_text="USER mode: Django groups whose members may publish; empty means any signed-in user.",
    )
    subscribe_groups = models.JSONField(
        default=list,
        blank=True,
        help_text="USER mode: Django groups whose members may subscribe; empty means any signed-in user.",
    )
    publish_handler = models.CharField(
        max_length=200, blank=True, help_text="on_publish handler: a registered name or a dotted path."
    )
    subscribe_handler = models.CharField(
        max_length=200, blank=True, help_text="on_subscribe handler: a registered name or a dotted path."
    )
    presence = models.BooleanField(
        default=False,
        help_text="List who is subscribed on presence channels (/$presence/...), not only how many.",
    )
    presence_max_members = models.PositiveIntegerField(
        default=100, help_text="Members listed per channel at most; beyond, presence gives counts only."
    )
    # Rates of operations (REALTIME's *_RATE defaults, PROTOCOL §7): beyond
    # them an operation is refused with LimitExceededException.
    publish_rate_per_connection = _rate_field("Publishes of one WebSocket connection")
    subscribe_rate_per_connection = _rate_field("Subscribes of one WebSocket connection")
    inbound_event_rate = _rate_field("Events published to the namespace by clients, by all processes")
    history_size = models.PositiveIntegerField(
        default=0,
        help_text="Publications kept per channel (and per wildcard) for recovery after a reconnect; "
        "0 keeps none (PROTOCOL §12).",
    )
    history_ttl = models.PositiveIntegerField(
        default=300, help_text="Seconds a publication stays in the history."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """An API key. The key itself is shown once at creation; only its hash is kept."""

    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… {self.description}".strip()

    def is_usable(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now


def validate_namespace_scopes(value: object) -> None:
    """A list of namespace names, or ``"*"`` for every namespace."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError("A list of namespace names is expected.")
    for name in value:
        if name != "*":
            namespace_name_validator(name)


class IamCredential(models.Model):
    """An access key for the IAM (SigV4) auth mode, with the policy that goes with it.

    The self-hosted twin of an IAM user's access key: ``can_connect``,
    ``publish_namespaces`` and ``subscribe_namespaces`` stand for
    ``appsync:EventConnect``, ``appsync:EventPublish`` and
    ``appsync:EventSubscribe`` on the API and its namespaces (PROTOCOL §5.1);
    ``"*"`` means every namespace.

    Unlike :class:`ApiKey`, the secret access key is stored as it is: verifying
    a SigV4 signature means recomputing an HMAC keyed with the secret (AWS keeps
    its secrets the same way). Treat the database, its backups and this table's
    admin permissions as holding live credentials; revoke a key rather than
    delete it.
    """

    access_key_id = models.CharField(max_length=20, unique=True, editable=False)
    secret_access_key = models.CharField(max_length=40, editable=False)
    description = models.CharField(max_length=200, blank=True)
    can_connect = models.BooleanField(
        default=True, help_text="appsync:EventConnect: may open a WebSocket connection."
    )
    publish_namespaces = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_namespace_scopes],
        help_text='appsync:EventPublish: namespace names, or "*" for all.',
    )
    subscribe_namespaces = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_namespace_scopes],
        help_text='appsync:EventSubscribe: namespace names, or "*" for all.',
    )
    # What handlers see as ctx.identity (PROTOCOL §5.4); blank: derived.
    account_id = models.CharField(
        max_length=12,
        blank=True,
        validators=[RegexValidator(r"^\d{12}\Z", "Twelve digits.")],
        help_text="ctx.identity.accountId; blank: 000000000000.",
    )
    username = models.CharField(
        max_length=128, blank=True, help_text="ctx.identity.username; blank: the access key id."
    )
    user_arn = models.CharField(
        max_length=2048,
        blank=True,
        help_text="ctx.identity.userArn; blank: arn:aws:iam::<account>:user/<username>.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    DEFAULT_ACCOUNT_ID = "000000000000"

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "IAM credential"

    def __str__(self) -> str:
        return f"{self.access_key_id} {self.description}".strip()

    def is_usable(self) -> bool:
        return self.revoked_at is None

    @property
    def effective_account_id(self) -> str:
        return self.account_id or self.DEFAULT_ACCOUNT_ID

    @property
    def effective_username(self) -> str:
        return self.username or self.access_key_id

    @property
    def effective_user_arn(self) -> str:
        return self.user_arn or f"arn:aws:iam::{self.effective_account_id}:user/{self.effective_username}"


class PendingPublication(models.Model):
    """Events written by :func:`realtime.publish_on_commit`, waiting for the relay.

    The relay is :mod:`realtime.operations.relay`.

    A row commits with the caller's transaction, is published in ``id`` order per
    channel, and is deleted once the publish went through. ``key`` is the
    caller's identifier: a second write with a key still pending is ignored.
    ``origin`` names the process that wrote it, if that process relays.
    """

    key = models.CharField(max_length=200, unique=True)
    channel = models.CharField(max_length=300)
    # The events as they will be published: JSON objects, each carrying its identifier.
    events = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    # The writing process ("host:pid:token") if its relay runs, else "": where
    # the channel layer stays in its process, only that process's subscribers
    # can receive the events (realtime.operations.relay).
    origin = models.CharField(max_length=100, default="", db_default="", blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.key} → {self.channel}"
