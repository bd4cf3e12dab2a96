from django.contrib import admin, messages

from . import pipeline
from .models import DuplicateDelivery, InboxEvent, Source


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "enabled", "rate_limit_per_minute", "last_event_at",
                    "has_previous_secret"]
    list_filter = ["enabled"]
    search_fields = ["slug", "name"]
    # Secrets are never rendered: they are shown once by `create_source` or the rotate action.
    exclude = ["secret", "previous_secret"]
    readonly_fields = ["last_event_at", "created_at"]
    actions = ["rotate_secret", "retire_previous_secret"]

    @admin.display(boolean=True, description="rotation in progress")
    def has_previous_secret(self, source):
        return bool(source.previous_secret)

    @admin.action(description="Rotate secret (the old one stays valid until retired)")
    def rotate_secret(self, request, queryset):
        for source in queryset:
            secret = source.rotate_secret()
            self.message_user(request, f"{source.slug}: new secret {secret} — copy it now, it "
                                       "is not shown again.", messages.WARNING)

    @admin.action(description="Retire the previous secret")
    def retire_previous_secret(self, request, queryset):
        for source in queryset:
            source.retire_previous_secret()
        self.message_user(request, f"Retired previous secrets of {queryset.count()} source(s).")


@admin.register(InboxEvent)
class InboxEventAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "event_id", "type", "time", "status", "attempts",
                    "received_at"]
    list_filter = ["status", "source", "type"]
    search_fields = ["event_id", "correlation_id", "subject"]
    date_hierarchy = "received_at"
    actions = ["replay_dead_letters"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Replay selected dead letters")
    def replay_dead_letters(self, request, queryset):
        result = pipeline.replay(list(queryset.values_list("pk", flat=True)))
        self.message_user(request, "Replayed {replayed}: {processed} processed, {dead} still "
                                   "dead.".format(**result))


@admin.register(DuplicateDelivery)
class DuplicateDeliveryAdmin(admin.ModelAdmin):
    list_display = ["source", "event_id", "received_at"]
    list_filter = ["source"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
