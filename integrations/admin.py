"""Admin for what OpsView sends out. Every change is audited; secrets (a webhook's signing
secret, the tokens inside an alert URL) are shown once, never rendered again."""
from django import forms
from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse

from opsview import audit
from opsview.admin import show_secrets_once

from .models import AlertSubscription, CaseWebhook, Delivery


class AuditedAdmin(admin.ModelAdmin):
    """Records who created, changed or deleted a row, and which fields changed (never their
    values)."""

    audit_name = ""

    def target(self, obj: Model) -> str:
        return f"{self.audit_name}:{obj.pk}"

    def save_model(self, request: HttpRequest, obj: Model, form: forms.ModelForm,
                   change: bool) -> None:
        """Save, and audit who created or changed which fields."""
        super().save_model(request, obj, form, change)
        audit.record(f"{self.audit_name}.{'changed' if change else 'created'}", self.target(obj),
                     request=request, fields=sorted(form.changed_data))

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        """Audit, then delete."""
        audit.record(f"{self.audit_name}.deleted", self.target(obj), request=request)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Bulk deletion, audited row by row."""
        for obj in queryset:
            self.delete_model(request, obj)


class SubscriptionForm(forms.ModelForm):
    """The URL is write-only: left blank on a change, the stored one is kept."""

    url = forms.CharField(label="Notification URL", required=False, max_length=1000,
                          widget=forms.PasswordInput(render_value=False),
                          help_text="An Apprise URL: slack://…, msteams://…, pagerduty://…, "
                                    "mailto://…, json://… Blank on a change keeps the "
                                    "current one.")

    class Meta:
        model = AlertSubscription
        fields = ["name", "url", "queue", "case_type", "min_severity", "on_opened", "on_at_risk",
                  "on_breached", "on_escalated", "daily_digest", "enabled"]

    def clean_url(self) -> str:
        """The URL typed, or the stored one when left blank on a change."""
        url = self.cleaned_data["url"]
        if not url:
            if self.instance.pk:
                return self.instance.url
            raise forms.ValidationError("a notification URL is required")
        for validator in AlertSubscription._meta.get_field("url").validators:
            validator(url)
        return url


@admin.register(AlertSubscription)
class AlertSubscriptionAdmin(AuditedAdmin):
    audit_name = "alert_subscription"
    form = SubscriptionForm
    list_display = ["name", "masked_url", "queue", "case_type", "min_severity", "on_opened",
                    "on_at_risk", "on_breached", "on_escalated", "daily_digest", "enabled"]
    list_filter = ["enabled", "queue"]


@admin.register(CaseWebhook)
class CaseWebhookAdmin(AuditedAdmin):
    audit_name = "case_webhook"
    list_display = ["name", "url", "enabled", "created_at"]
    exclude = ["secret"]
    actions = ["rotate_secret"]

    def response_add(self, request: HttpRequest, obj: CaseWebhook,
                     post_url_continue: str | None = None) -> HttpResponse:
        """After adding: the new secret, shown once."""
        return show_secrets_once(self, request, "New case webhook secret",
                                 [(obj.name, obj.secret)],
                                 "admin:integrations_casewebhook_changelist")

    @admin.action(description="New signing secret (shown once)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        secrets = []
        for hook in queryset:
            secrets.append((hook.name, hook.new_secret()))
            audit.record("case_webhook.secret_rotated", self.target(hook), request=request)
        return show_secrets_once(self, request, "New case webhook secrets", secrets,
                                 "admin:integrations_casewebhook_changelist")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "status", "attempts", "case", "title",
                    "next_attempt_at", "delivered_at"]
    list_filter = ["kind", "status"]
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        """Every field: deliveries are a record, not settings."""
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
