"""The operators' console for responses and client API keys."""

from __future__ import annotations

import time
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from responses_app.admin import views as admin_views
from responses_app.admin.transcript import seconds
from responses_app.gateway import keys
from responses_app.models import ClientKey, Response, ResponseEvent, ResponseItem, UsageRecord
from responses_app.services import flows

# ---------------------------------------------------------------------------- responses


class CreatedFilter(admin.SimpleListFilter):
    """``created_at`` is epoch seconds, so date ranges are computed here."""

    title = "created"
    parameter_name = "created"
    RANGES = {
        "hour": ("Past hour", 3600),
        "day": ("Past 24 hours", 86400),
        "week": ("Past 7 days", 7 * 86400),
        "month": ("Past 30 days", 30 * 86400),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.RANGES.items()] + [("older", "Older than 30 days")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value in self.RANGES:
            return queryset.filter(created_at__gte=time.time() - self.RANGES[value][1])
        if value == "older":
            return queryset.filter(created_at__lt=time.time() - self.RANGES["month"][1])
        return queryset


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["short_id", "status_badge", "model", "provider", "created", "duration", "tokens"]
    list_display_links = ["short_id"]
    list_filter = [
        "status",
        ("model", admin.AllValuesFieldListFilter),
        ("provider", admin.AllValuesFieldListFilter),
        CreatedFilter,
    ]
    search_fields = ["id", "search_text"]
    search_help_text = "Search by response id or by the text of its input messages."
    list_per_page = 50
    actions = ["cancel_selected"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: Response) -> str:
        shown = obj.id if len(obj.id) <= 18 else obj.id[:18] + "…"
        return format_html('<span title="{}" class="or-id">{}</span>', obj.id, shown)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Response) -> str:
        return format_html(
            '<span class="or-status or-status-{}">{}</span>', obj.status, obj.get_status_display()
        )

    @admin.display(description="created (UTC)", ordering="created_at")
    def created(self, obj: Response) -> str:
        return format_html(
            '<span class="or-nowrap">{}</span>',
            admin_views.as_datetime(obj.created_at).strftime("%Y-%m-%d %H:%M:%S"),
        )

    @admin.display(description="duration")
    def duration(self, obj: Response) -> str:
        if obj.completed_at is None:
            return "running" if not obj.is_finished else "—"
        return seconds(obj.completed_at - obj.created_at)

    @admin.display(description="tokens")
    def tokens(self, obj: Response) -> Any:
        return (obj.usage or {}).get("total_tokens", "—")

    @admin.action(description="Cancel selected responses (unfinished ones)")
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = 0
        for response in queryset.filter(status__in=["queued", "in_progress"]):
            admin_views.cancel_response(request, response)
            done += 1
        if not done:
            messages.info(request, "None of the selected responses was still running.")

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        """Count items and events instead of listing each one (a response may have thousands)."""
        responses = list(objs)
        items = ResponseItem.objects.filter(response__in=responses).count()
        events = ResponseEvent.objects.filter(response__in=responses).count()
        summary = [f"Response {r.id} ({r.status}, {r.model})" for r in responses] + [
            f"{items} input and output items",
            f"{events} stored events",
        ]
        counts = {"responses": len(responses), "items": items, "events": events}
        perms_needed = (
            set() if all(self.has_delete_permission(request, r) for r in responses) else {"response"}
        )
        return summary, counts, perms_needed, []

    def delete_model(self, request: HttpRequest, obj: Response) -> None:
        flows.delete_response(response=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for response in queryset:
            flows.delete_response(response=response)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """A response's page is its transcript (responses are never edited by hand)."""
        return admin_views.transcript_view(self, request, object_id)

    def get_urls(self) -> list:
        def wrap(view: Any) -> Any:
            def call(request: HttpRequest, object_id: str) -> HttpResponse:
                return view(self, request, object_id)

            return self.admin_site.admin_view(call)

        name = "responses_app_response"
        return [
            path("<path:object_id>/events/", wrap(admin_views.events_view), name=f"{name}_events"),
            path("<path:object_id>/events.json", wrap(admin_views.events_json), name=f"{name}_events_json"),
            path("<path:object_id>/raw.json", wrap(admin_views.raw_json), name=f"{name}_raw"),
            path("<path:object_id>/cancel/", wrap(admin_views.cancel_view), name=f"{name}_cancel"),
        ] + super().get_urls()


# ---------------------------------------------------------------------------- client keys

KEY_LIMIT_FIELDS = ["rpm", "tpm", "max_concurrent", "retention_days"]


class PatternsField(forms.CharField):
    """A list of globs edited one per line (or comma separated)."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 40, "placeholder": "gpt-4o*\nclaude-*"})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value) or ""
        return [p.strip() for line in text.splitlines() for p in line.split(",") if p.strip()]


class ClientKeyForm(forms.ModelForm):
    allowed_models = PatternsField(
        required=False, help_text="One shell-style glob per line (e.g. gpt-4o*). Empty: every model."
    )

    class Meta:
        model = ClientKey
        fields = ["name", "allowed_models", *KEY_LIMIT_FIELDS]


@admin.register(ClientKey)
class ClientKeyAdmin(admin.ModelAdmin):
    form = ClientKeyForm
    list_display = ["name", "token_hint", "models", "limits", "state", "last_used_at", "created_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = ["token_hint", "state", "last_used_at", "created_at", "revoked_at"]
    actions = ["revoke_selected"]
    change_form_template = "admin/responses_app/clientkey/change_form.html"

    def get_fields(self, request: HttpRequest, obj: ClientKey | None = None) -> list[str]:
        if obj is None:
            return ["name", "allowed_models", *KEY_LIMIT_FIELDS]
        return [
            "name",
            "token_hint",
            "allowed_models",
            *KEY_LIMIT_FIELDS,
            "state",
            "last_used_at",
            "revoked_at",
            "created_at",
        ]

    @admin.display(description="key")
    def token_hint(self, obj: ClientKey) -> str:
        return f"{keys.TOKEN_PREFIX}{obj.prefix}_…"

    @admin.display(description="allowed models")
    def models(self, obj: ClientKey) -> str:
        return ", ".join(obj.allowed_models or []) or "any"

    @admin.display(description="limits")
    def limits(self, obj: ClientKey) -> str:
        return limits_text(obj)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        """The stored keys, and beside them the keys declared in the config file (read-only)."""
        error = ""
        try:
            declared = keys.config_keys()
        except ValueError as exc:
            declared, error = [], str(exc)
        rows = [
            {"key": key, "limits": limits_text(key), "models": ", ".join(key.models) or "any"}
            for key in declared
        ]
        return super().changelist_view(
            request, {**(extra_context or {}), "config_keys": rows, "config_keys_error": error}
        )

    @admin.display(description="state")
    def state(self, obj: ClientKey) -> str:
        if obj.revoked_at:
            return mark_safe('<span class="or-status or-status-cancelled">revoked</span>')
        return mark_safe('<span class="or-status or-status-completed">active</span>')

    def save_model(self, request: HttpRequest, obj: ClientKey, form: Any, change: bool) -> None:
        if change:
            keys.key_update(key=obj)
            return
        row, token = keys.key_create(
            name=obj.name, allowed_models=obj.allowed_models, **{f: getattr(obj, f) for f in KEY_LIMIT_FIELDS}
        )
        obj.pk, obj.prefix, obj.secret_hash, obj.created_at = (
            row.pk,
            row.prefix,
            row.secret_hash,
            row.created_at,
        )
        obj._state.adding = False
        obj._clear_token = token  # shown once by response_add, never stored

    def response_add(
        self, request: HttpRequest, obj: ClientKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Copy the new key now",
            "subtitle": None,
            "key": obj,
            "token": getattr(obj, "_clear_token", ""),
            "change_url": reverse("admin:responses_app_clientkey_change", args=[obj.pk]),
            "list_url": reverse("admin:responses_app_clientkey_changelist"),
        }
        response = TemplateResponse(request, "admin/responses_app/clientkey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def delete_model(self, request: HttpRequest, obj: ClientKey) -> None:
        keys.key_delete(key=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        keys.reset_cache()

    @admin.action(description="Revoke selected keys")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            keys.key_revoke(key=key)
            count += 1
        messages.success(request, f"Revoked {count} key(s). Requests using them now get 401.")

    def get_urls(self) -> list:
        return [
            path(
                "<path:object_id>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name="responses_app_clientkey_revoke",
            ),
        ] + super().get_urls()

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from django.http import Http404, HttpResponseNotAllowed
        from django.shortcuts import redirect

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        key = ClientKey.objects.filter(pk=object_id).first()
        if key is None or not self.has_change_permission(request, key):
            raise Http404("No such key")
        keys.key_revoke(key=key)
        messages.success(request, f"Revoked “{key.name}”. Requests using it now get 401.")
        return redirect(reverse("admin:responses_app_clientkey_change", args=[key.pk]))


def limits_text(key: Any) -> str:
    """``60 rpm · 200000 tpm · 4 at once · 30 days`` (or ``none``) for a stored or declared key."""
    parts = []
    if key.rpm:
        parts.append(f"{key.rpm} rpm")
    if key.tpm:
        parts.append(f"{key.tpm} tpm")
    if key.max_concurrent:
        parts.append(f"{key.max_concurrent} at once")
    if key.retention_days:
        parts.append(f"kept {key.retention_days} days")
    return " · ".join(parts) or "none"


# ---------------------------------------------------------------------------- usage and cost


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """Usage and cost per key, per model and per day, with CSV export (rows are written by the loop)."""

    change_list_template = "admin/responses_app/usagerecord/usage.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        return admin_views.usage_view(self, request)

    def get_urls(self) -> list:
        from responses_app.admin.dashboard import dashboard_view

        return [
            path(
                "dashboard/",
                self.admin_site.admin_view(lambda request: dashboard_view(self, request)),
                name="responses_app_usagerecord_dashboard",
            ),
        ] + super().get_urls()
