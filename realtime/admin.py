"""Namespaces, API keys and IAM credentials in the Django admin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from realtime.handlers import HandlerKind, registered_names
from realtime.models import ApiKey, AuthMode, IamCredential, Namespace
from realtime.store.services import apikey_create, iamcredential_create

if TYPE_CHECKING:
    # django-stubs makes these generic in their model; Django's own classes cannot
    # be subscripted at run time.
    _NamespaceForm = forms.ModelForm[Namespace]
    _ApiKeyForm = forms.ModelForm[ApiKey]
    _IamCredentialForm = forms.ModelForm[IamCredential]
    _NamespaceAdmin = admin.ModelAdmin[Namespace]
    _ApiKeyAdmin = admin.ModelAdmin[ApiKey]
    _IamCredentialAdmin = admin.ModelAdmin[IamCredential]
else:
    _NamespaceForm = _ApiKeyForm = _IamCredentialForm = forms.ModelForm
    _NamespaceAdmin = _ApiKeyAdmin = _IamCredentialAdmin = admin.ModelAdmin


class NamespaceForm(_NamespaceForm):
    publish_auth_modes = forms.MultipleChoiceField(
        choices=AuthMode.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None checked: the API defaults (REALTIME['DEFAULT_PUBLISH_AUTH_MODES']).",
    )
    subscribe_auth_modes = forms.MultipleChoiceField(
        choices=AuthMode.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None checked: the API defaults (REALTIME['DEFAULT_SUBSCRIBE_AUTH_MODES']).",
    )

    publish_groups = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="USER mode: groups allowed to publish; none checked means any signed-in user.",
    )
    subscribe_groups = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="USER mode: groups allowed to subscribe; none checked means any signed-in user.",
    )
    publish_handler = forms.ChoiceField(required=False)
    subscribe_handler = forms.ChoiceField(required=False)

    class Meta:
        model = Namespace
        fields = [
            "name",
            "description",
            "publish_auth_modes",
            "subscribe_auth_modes",
            "publish_groups",
            "subscribe_groups",
            "publish_handler",
            "subscribe_handler",
            "presence",
            "presence_max_members",
            "publish_rate_per_connection",
            "subscribe_rate_per_connection",
            "inbound_event_rate",
            "history_size",
            "history_ttl",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        groups = list(Group.objects.order_by("name").values_list("name", flat=True))
        for field in ("publish_groups", "subscribe_groups"):
            kept = [g for g in self.initial.get(field) or [] if g not in groups]
            _choice_field(self, field).choices = [(g, g) for g in groups + kept]
        # Handlers registered in realtime_handlers modules, by name; blank means
        # the handler registered under the namespace's own name, if any.
        for field, kind in (
            ("publish_handler", HandlerKind.PUBLISH),
            ("subscribe_handler", HandlerKind.SUBSCRIBE),
        ):
            names = registered_names(kind)
            current = self.initial.get(field) or ""
            if current and current not in names:
                names.append(current)  # a dotted path set from code stays selectable
            _choice_field(self, field).choices = [("", "(the namespace's own, if registered)")] + [
                (n, n) for n in names
            ]


def _choice_field(form: NamespaceForm, name: str) -> forms.ChoiceField:
    # Each name passed here is declared above as a ChoiceField or MultipleChoiceField.
    return cast(forms.ChoiceField, form.fields[name])


@admin.register(Namespace)
class NamespaceAdmin(_NamespaceAdmin):
    form = NamespaceForm
    list_display = ["name", "description", "publish_modes", "subscribe_modes", "updated_at"]
    search_fields = ["name", "description"]

    @admin.display(description="publish")
    def publish_modes(self, obj: Namespace) -> str:
        return ", ".join(obj.publish_auth_modes) or "(defaults)"

    @admin.display(description="subscribe")
    def subscribe_modes(self, obj: Namespace) -> str:
        return ", ".join(obj.subscribe_auth_modes) or "(defaults)"


class ApiKeyForm(_ApiKeyForm):
    class Meta:
        model = ApiKey
        fields = ["description", "expires_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(_ApiKeyAdmin):
    form = ApiKeyForm
    list_display = ["prefix", "description", "created_at", "expires_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "description"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return ["prefix", "created_at", "revoked_at", "live_connections"] if obj else []

    @admin.display(description="Live connections")
    def live_connections(self, obj: ApiKey) -> str:
        """Sockets open with this key now, in every server process (PROTOCOL §12)."""
        from asgiref.sync import async_to_sync

        from realtime.presence.service import api_key_connections

        try:
            return str(async_to_sync(api_key_connections)(obj.pk))
        except Exception as exc:  # Redis away: the page still renders
            return f"unknown ({exc.__class__.__name__})"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created, raw_key = apikey_create(description=obj.description)
        if obj.expires_at is not None:
            created.expires_at = obj.expires_at
            created.save(update_fields=["expires_at"])
        obj.pk = created.pk
        obj.prefix = created.prefix
        # Shown once: only the hash is stored.
        self.message_user(
            request, f"New API key (copy it now, it is not shown again): {raw_key}", messages.WARNING
        )

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        now = timezone.now()
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key.revoked_at = now
            api_key.save(update_fields=["revoked_at"])
            count += 1
        self.message_user(request, f"Revoked {count} API key(s).")


class NamespaceListField(forms.CharField):
    """A list of namespace names typed as one line: ``default, chat`` or ``*``."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return ", ".join(value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]  # a list of names, not a str
        if isinstance(value, list):
            return value
        # None only with empty_value=None, which this field is never given: no names either way.
        text = super().to_python(value) or ""
        return [name for name in text.replace(",", " ").split() if name]


class IamCredentialForm(_IamCredentialForm):
    publish_namespaces = NamespaceListField(
        required=False, help_text='appsync:EventPublish: namespace names separated by commas, or "*".'
    )
    subscribe_namespaces = NamespaceListField(
        required=False, help_text='appsync:EventSubscribe: namespace names separated by commas, or "*".'
    )

    class Meta:
        model = IamCredential
        fields = [
            "description",
            "can_connect",
            "publish_namespaces",
            "subscribe_namespaces",
            "account_id",
            "username",
            "user_arn",
        ]


@admin.register(IamCredential)
class IamCredentialAdmin(_IamCredentialAdmin):
    """Access keys for the IAM (SigV4) mode. The secret is shown once, when the key is created."""

    form = IamCredentialForm
    list_display = [
        "access_key_id",
        "description",
        "can_connect",
        "publish_scope",
        "subscribe_scope",
        "created_at",
        "revoked_at",
    ]
    list_filter = ["revoked_at", "can_connect"]
    search_fields = ["access_key_id", "description", "username"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: IamCredential | None = None) -> list[str]:
        return ["access_key_id", "created_at", "revoked_at"] if obj else []

    @admin.display(description="publish")
    def publish_scope(self, obj: IamCredential) -> str:
        return ", ".join(obj.publish_namespaces) or "(none)"

    @admin.display(description="subscribe")
    def subscribe_scope(self, obj: IamCredential) -> str:
        return ", ".join(obj.subscribe_namespaces) or "(none)"

    def save_model(self, request: HttpRequest, obj: IamCredential, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = iamcredential_create(
            description=obj.description,
            can_connect=obj.can_connect,
            publish_namespaces=obj.publish_namespaces,
            subscribe_namespaces=obj.subscribe_namespaces,
            account_id=obj.account_id,
            username=obj.username,
            user_arn=obj.user_arn,
        )
        obj.pk = created.pk
        obj.access_key_id = created.access_key_id
        obj.secret_access_key = created.secret_access_key
        obj.created_at = created.created_at
        self.message_user(
            request,
            f"New IAM credential: access key id {created.access_key_id}, secret access key "
            f"{created.secret_access_key} (copy it now, the admin does not show it again).",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected IAM credentials")
    def revoke(self, request: HttpRequest, queryset: QuerySet[IamCredential]) -> None:
        now = timezone.now()
        count = 0
        for credential in queryset.filter(revoked_at__isnull=True):
            credential.revoked_at = now
            credential.save(update_fields=["revoked_at"])
            count += 1
        self.message_user(request, f"Revoked {count} IAM credential(s).")
