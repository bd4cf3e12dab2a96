from typing import cast

from django.contrib import admin
from django.contrib.auth.models import User
from django.forms import ModelForm
from django.http import HttpRequest

from opsview.admin import ReadOnlyAdmin

from .models import (
    Case,
    CaseEntry,
    Holiday,
    MoneyThreshold,
    PayloadCorrection,
    Queue,
    RoutingRule,
    RuleSetting,
    SavedView,
    SlaPolicy,
)


class HolidayInline(admin.TabularInline):
    model = Holiday
    extra = 1


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "time_zone", "working_days", "work_start", "work_end",
                    "escalation_queue"]
    filter_horizontal = ["members"]
    inlines = [HolidayInline]


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin):
    list_display = ["case_type", "severity", "response_minutes", "resolution_minutes",
                    "escalate_notify", "escalate_raise_severity", "escalate_move_queue"]


@admin.register(RuleSetting)
class RuleSettingAdmin(admin.ModelAdmin):
    list_display = ["case_type", "enabled", "severity", "queue", "parameters"]


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    list_display = ["priority", "case_type", "client_id", "practice", "legal_entity",
                    "project_id", "queue", "owner", "active"]

    def save_model(self, request: HttpRequest, obj: RoutingRule, form: ModelForm,
                   change: bool) -> None:
        super().save_model(request, obj, form, change)
        from .routing import reroute_open_cases

        # The admin serves signed-in staff only: never an anonymous user.
        reroute_open_cases(actor=cast(User, request.user))


@admin.register(MoneyThreshold)
class MoneyThresholdAdmin(admin.ModelAdmin):
    """Severity by money at stake, per currency; saving one raises the open cases it
    reaches (audited), as new and re-evaluated cases are."""

    list_display = ["currency", "amount", "severity"]
    list_filter = ["currency", "severity"]

    def save_model(self, request: HttpRequest, obj: MoneyThreshold, form: ModelForm,
                   change: bool) -> None:
        super().save_model(request, obj, form, change)
        from .services import apply_money_thresholds

        raised = apply_money_thresholds(actor=cast(User, request.user))  # staff, as above
        if raised:
            self.message_user(request, f"{raised} open case(s) raised to this severity or above.")


@admin.register(Case)
class CaseAdmin(ReadOnlyAdmin):
    """Cases change through triage, where every change is audited."""

    list_display = ["pk", "type", "title", "status", "severity", "queue", "owner", "sla_state"]
    list_filter = ["type", "status", "severity", "queue", "sla_state"]
    search_fields = ["title", "fingerprint", "object_id"]


@admin.register(CaseEntry)
class CaseEntryAdmin(ReadOnlyAdmin):
    """The audit trail: nobody edits or deletes it, here or anywhere."""

    list_display = ["at", "case", "actor_label", "action", "field", "from_value", "to_value"]


@admin.register(PayloadCorrection)
class PayloadCorrectionAdmin(ReadOnlyAdmin):
    """Dead letters corrected on their case: made there, audited, never edited here."""

    list_display = ["at", "case", "original", "corrected", "actor"]


@admin.register(SavedView)
class SavedViewAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "shared", "query", "created_at"]
    list_filter = ["shared"]
