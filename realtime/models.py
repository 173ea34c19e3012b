"""Namespaces and API keys, managed in the admin (DESIGN §6, PROTOCOL §4, §5)."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from .paths import NAMESPACE_NAME


class AuthMode(models.TextChoices):
    """How a request may be authorized (DESIGN §6)."""

    API_KEY = "API_KEY", "API key"
    USER = "USER", "Django user"
    OIDC = "OIDC", "OpenID Connect / JWT"
    CUSTOM = "CUSTOM", "Custom authorizer"
    IAM = "IAM", "IAM (SigV4)"


namespace_name_validator = RegexValidator(
    NAMESPACE_NAME.pattern.removesuffix(r"\Z") + r"\Z",
    "1-50 letters, digits and hyphens, starting and ending with a letter or digit.",
)


def validate_auth_modes(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(mode, str) for mode in value):
        raise ValidationError("A list of auth mode names is expected.")
    unknown = [mode for mode in value if mode not in AuthMode.values]
    if unknown:
        raise ValidationError(f"Unknown auth mode(s): {', '.join(unknown)}.")


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
    publish_handler = models.CharField(
        max_length=200, blank=True, help_text="on_publish handler: a registered name or a dotted path."
    )
    subscribe_handler = models.CharField(
        max_length=200, blank=True, help_text="on_subscribe handler: a registered name or a dotted path."
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
