import json

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from opsview import audit
from opsview.admin import show_secrets_once

from . import pipeline
from .models import DuplicateDelivery, InboxEvent, Source


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "enabled", "rate_limit_per_minute", "last_event_at",
                    "has_previous_secret"]
    list_filter = ["enabled"]
    search_fields = ["slug", "name"]
    # Secrets are never rendered: they are shown once by `create_source` or the rotate action.
    exclude = ["secret", "previous_secret", "callback_secret"]
    readonly_fields = ["last_event_at", "created_at"]
    actions = ["rotate_secret", "retire_previous_secret", "new_callback_secret"]

    @admin.display(boolean=True, description="rotation in progress")
    def has_previous_secret(self, source: Source) -> bool:
        return bool(source.previous_secret)

    def save_model(self, request: HttpRequest, obj: Source, form: ModelForm, change: bool,
                   ) -> None:
        super().save_model(request, obj, form, change)
        action = "source.changed" if change else "source.created"
        audit.record(action, f"source:{obj.slug}", request=request,
                     fields=sorted(form.changed_data))

    def delete_model(self, request: HttpRequest, obj: Source) -> None:
        audit.record("source.deleted", f"source:{obj.slug}", request=request)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for source in queryset:
            audit.record("source.deleted", f"source:{source.slug}", request=request)
        super().delete_queryset(request, queryset)

    @admin.action(description="Rotate secret (the old one stays valid until retired)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        rotated = []
        for source in queryset:
            rotated.append((source.slug, source.rotate_secret()))
            audit.record("source.secret_rotated", f"source:{source.slug}", request=request)
        return show_secrets_once(self, request, "New signing secrets", rotated,
                                 "admin:ingestion_source_changelist")

    @admin.action(description="New callback secret for retry requests (shown once)")
    def new_callback_secret(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        issued = []
        for source in queryset:
            issued.append((source.slug, source.new_callback_secret()))
            audit.record("source.callback_secret_issued", f"source:{source.slug}",
                         request=request)
        return show_secrets_once(self, request, "New callback secrets", issued,
                                 "admin:ingestion_source_changelist")

    @admin.action(description="Retire the previous secret")
    def retire_previous_secret(self, request: HttpRequest, queryset: QuerySet) -> None:
        for source in queryset:
            source.retire_previous_secret()
            audit.record("source.previous_secret_retired", f"source:{source.slug}",
                         request=request)
        self.message_user(request, f"Retired previous secrets of {queryset.count()} source(s).")


@admin.register(InboxEvent)
class InboxEventAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "event_source", "event_id", "type", "time", "status",
                    "attempts", "received_at"]
    list_filter = ["status", "source", "type"]
    search_fields = ["event_id", "event_source", "correlation_id", "subject"]
    date_hierarchy = "received_at"
    actions = ["replay_dead_letters"]
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.action(description="Replay selected dead letters")
    def replay_dead_letters(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        result = pipeline.replay(ids)
        audit.record("inbox.dead_letters_replayed", f"inbox:{len(ids)} rows", request=request,
                     ids=ids[:1000], **result)
        self.message_user(request, pipeline.replay_summary(result))


DELIVERY_FIELDS = ("source", "event_source", "event_id", "received_at", "conflict", "raw",
                   "stored_event", "stored_raw")


@admin.register(DuplicateDelivery)
class DuplicateDeliveryAdmin(admin.ModelAdmin):
    """Repeat deliveries; the conflicts among them (a repeat with other content, a middleware
    bug) beside the event they repeated."""

    list_display = ["source", "event_source", "event_id", "conflict", "received_at"]
    list_filter = ["conflict", "source"]
    search_fields = ["event_id", "event_source"]
    date_hierarchy = "received_at"
    show_full_result_count = False
    fields = DELIVERY_FIELDS
    readonly_fields = DELIVERY_FIELDS

    @admin.display(description="first delivery (stored)")
    def stored_event(self, delivery: DuplicateDelivery) -> str:
        stored = delivery.stored_event()
        if stored is None:
            return "—"
        return format_html('<a href="{}">inbox event {}</a> ({})',
                           reverse("admin:ingestion_inboxevent_change", args=[stored.pk]),
                           stored.pk, stored.status)

    @admin.display(description="first delivery's raw JSON")
    def stored_raw(self, delivery: DuplicateDelivery) -> str:
        stored = delivery.stored_event()
        return "—" if stored is None else json.dumps(stored.raw, indent=2, sort_keys=True)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
