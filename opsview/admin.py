from django.contrib import admin
from django.db.models import Model, QuerySet
from django.forms import BaseFormSet, ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from . import audit, models


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never changed here: business state is written by events, cases by triage."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(models.Client)
class ClientAdmin(ReadOnlyAdmin):
    list_display = ["client_id", "name", "tax_id", "currency", "merged_into", "is_placeholder"]
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
                    "issued_date", "voided_date", "is_placeholder"]
    search_fields = ["invoice_id"]
    list_filter = ["status", "blocked_reason", "currency", "is_placeholder"]


@admin.register(models.StageEvent)
class StageEventAdmin(ReadOnlyAdmin):
    list_display = ["kind", "record_id", "stage", "at", "event_id", "invoice_ref"]
    search_fields = ["event_id", "invoice_ref"]
    list_filter = ["kind", "stage"]
    show_full_result_count = False


@admin.register(models.WipSpan)
class WipSpanAdmin(ReadOnlyAdmin):
    list_display = ["kind", "record_id", "start", "end", "in_billing", "on_date"]
    list_filter = ["kind", "in_billing"]
    show_full_result_count = False


for model in (models.Assignment, models.Expense, models.Milestone, models.RevenueRecognition,
              models.SyncAttempt, models.ReconciliationReport, models.ReconciliationReading,
              models.FlowRhythm):
    admin.site.register(model, ReadOnlyAdmin)


def show_secrets_once(model_admin: admin.ModelAdmin, request: HttpRequest, title: str,
                      secrets: list[tuple[str, str]], changelist: str,
                      what: str = "each secret") -> HttpResponse:
    """The one response that shows new secrets: never cached, never put in a message or a
    cookie. `secrets` is [(what it is for, the secret)]."""
    response = TemplateResponse(request, "admin/secret_once.html", {
        **model_admin.admin_site.each_context(request), "title": title, "what": what,
        "it_is": "it is", "secrets": secrets, "back_url": reverse(changelist)})
    add_never_cache_headers(response)
    return response


@admin.register(models.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["user", "name", "scopes", "token_hint", "created_at", "last_used_at",
                    "revoked"]
    list_filter = ["revoked"]
    fields = ["user", "name", "scopes", "revoked"]

    def save_model(self, request: HttpRequest, obj: Model, form: ModelForm, change: bool) -> None:
        if not change:
            obj.plaintext = obj.set_new_token()
        super().save_model(request, obj, form, change)
        if not change:
            audit.record("api_token.created", f"api-token:{obj.pk}", request=request,
                         user=obj.user.get_username(), hint=obj.token_hint)
        elif "revoked" in form.changed_data:
            action = "api_token.revoked" if obj.revoked else "api_token.restored"
            audit.record(action, f"api-token:{obj.pk}", request=request,
                         user=obj.user.get_username(), hint=obj.token_hint)
        if change and "scopes" in form.changed_data:
            audit.record("api_token.scopes_changed", f"api-token:{obj.pk}", request=request,
                         user=obj.user.get_username(), hint=obj.token_hint, scopes=obj.scopes)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        audit.record("api_token.deleted", f"api-token:{obj.pk}", request=request,
                     user=obj.user.get_username(), hint=obj.token_hint)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for token in queryset.select_related("user"):
            self.delete_model(request, token)

    def response_add(self, request: HttpRequest, obj: Model,
                     post_url_continue: str | None = None) -> HttpResponse:
        return show_secrets_once(self, request, "New API token",
                                 [(f"{obj.user} ({obj.name or 'unnamed'})", obj.plaintext)],
                                 "admin:opsview_apitoken_changelist", what="the token")


@admin.register(models.AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor_label", "action", "target", "remote_addr"]
    list_filter = ["action"]
    search_fields = ["actor_label", "target"]
    date_hierarchy = "at"


@admin.register(models.FxRate)
class FxRateAdmin(ReadOnlyAdmin):
    list_display = ["date", "base", "quote", "rate", "version_time"]
    list_filter = ["base", "quote"]
    date_hierarchy = "date"


class CloseHolidayInline(admin.TabularInline):
    model = models.CloseHoliday
    extra = 1


@admin.register(models.CloseCalendar)
class CloseCalendarAdmin(admin.ModelAdmin):
    """Per legal entity: the working day after month end on which billing closes, and the
    holidays that are not working days. Every change is audited."""

    list_display = ["__str__", "legal_entity", "cutoff_working_day", "holiday_count"]
    inlines = [CloseHolidayInline]

    @admin.display(description="holidays")
    def holiday_count(self, calendar: models.CloseCalendar) -> int:
        return calendar.holidays.count()

    def _target(self, calendar: models.CloseCalendar) -> str:
        return f"close-calendar:{calendar.legal_entity or 'firm'}"

    def save_model(self, request: HttpRequest, obj: Model, form: ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit.record("close_calendar.changed" if change else "close_calendar.created",
                     self._target(obj), request=request, fields=sorted(form.changed_data),
                     cutoff_working_day=obj.cutoff_working_day)

    def save_formset(self, request: HttpRequest, form: ModelForm, formset: BaseFormSet,
                     change: bool) -> None:
        super().save_formset(request, form, formset, change)
        added = [str(h.date) for h in formset.new_objects]
        changed = [str(h.date) for h, _ in formset.changed_objects]
        removed = [str(h.date) for h in formset.deleted_objects]
        if added or changed or removed:
            audit.record("close_calendar.holidays_changed", self._target(form.instance),
                         request=request, added=added, changed=changed, removed=removed)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        audit.record("close_calendar.deleted", self._target(obj), request=request)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for calendar in queryset:
            self.delete_model(request, calendar)
