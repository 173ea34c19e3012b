"""Namespaces and API keys in the Django admin."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .models import ApiKey, AuthMode, Namespace
from .services import apikey_create


class NamespaceForm(forms.ModelForm):
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

    class Meta:
        model = Namespace
        fields = [
            "name",
            "description",
            "publish_auth_modes",
            "subscribe_auth_modes",
            "publish_handler",
            "subscribe_handler",
        ]


@admin.register(Namespace)
class NamespaceAdmin(admin.ModelAdmin):
    form = NamespaceForm
    list_display = ["name", "description", "publish_modes", "subscribe_modes", "updated_at"]
    search_fields = ["name", "description"]

    @admin.display(description="publish")
    def publish_modes(self, obj: Namespace) -> str:
        return ", ".join(obj.publish_auth_modes) or "(defaults)"

    @admin.display(description="subscribe")
    def subscribe_modes(self, obj: Namespace) -> str:
        return ", ".join(obj.subscribe_auth_modes) or "(defaults)"


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["description", "expires_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["prefix", "description", "created_at", "expires_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "description"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        return ["prefix", "created_at", "revoked_at"] if obj else []

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
