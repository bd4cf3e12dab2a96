from django.contrib import admin, messages

from . import models


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never changed here: business state is written by events, cases by triage."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.Client)
class ClientAdmin(ReadOnlyAdmin):
    list_display = ["client_id", "name", "tax_id", "currency", "is_placeholder"]
    search_fields = ["client_id", "name", "tax_id"]
    list_filter = ["is_placeholder"]


@admin.register(models.Project)
class ProjectAdmin(ReadOnlyAdmin):
    list_display = ["project_id", "name", "client", "practice", "legal_entity", "billing_method",
                    "status", "is_placeholder"]
    search_fields = ["project_id", "name"]
    list_filter = ["practice", "legal_entity", "billing_method", "status", "is_placeholder"]


@admin.register(models.Person)
class PersonAdmin(ReadOnlyAdmin):
    list_display = ["person_id", "name", "practice", "capacity_hours_per_week", "active",
                    "is_placeholder"]
    search_fields = ["person_id", "name"]
    list_filter = ["practice", "active", "is_placeholder"]


@admin.register(models.TimeEntry)
class TimeEntryAdmin(ReadOnlyAdmin):
    list_display = ["time_entry_id", "project", "person", "work_date", "hours", "billable",
                    "status"]
    search_fields = ["time_entry_id"]
    list_filter = ["status", "billable"]
    show_full_result_count = False


@admin.register(models.Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["invoice_id", "client", "amount", "currency", "status", "blocked_reason",
                    "issued_on"]
    search_fields = ["invoice_id"]
    list_filter = ["status", "blocked_reason", "currency"]


for model in (models.Assignment, models.Expense, models.Milestone, models.RevenueRecognition,
              models.SyncAttempt, models.ReconciliationReport):
    admin.site.register(model, ReadOnlyAdmin)


@admin.register(models.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "name", "token_hint", "created_at", "last_used_at", "revoked"]
    list_filter = ["revoked"]
    fields = ["user", "name", "revoked"]

    def save_model(self, request, obj, form, change):
        if not change:
            token = obj.set_new_token()
            self.message_user(request, f"Token for {obj.user}: {token} — copy it now, it is "
                                       "not shown again.", messages.WARNING)
        super().save_model(request, obj, form, change)
