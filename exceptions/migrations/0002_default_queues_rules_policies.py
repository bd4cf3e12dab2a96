from django.db import migrations

QUEUES = [("integration", "Integration"), ("finance-ops", "Finance ops"),
          ("delivery-ops", "Delivery ops"), ("escalations", "Escalations")]
# case type → (default queue, default severity, parameters)
RULES = {
    "sync_failed": ("integration", "medium", {}),
    "dead_letter": ("integration", "high", {}),
    "unknown_reference": ("integration", "medium", {}),
    "stale_feed": ("integration", "high", {}),
    "reconciliation_gap": ("integration", "medium", {}),
    "approved_time_unposted": ("finance-ops", "medium", {"posting_sla_hours": 24}),
    "invoice_blocked": ("finance-ops", "high", {}),
    "milestone_not_invoiced": ("finance-ops", "medium", {"grace_days": 5}),
    "missing_billing_setup": ("delivery-ops", "medium", {}),
    "duplicate_client": ("finance-ops", "low", {}),
}
# severity → (response minutes, resolution minutes), in business time
POLICIES = {"critical": (30, 240), "high": (120, 480), "medium": (240, 1440),
            "low": (480, 2400)}
WORKING_GROUPS = ["finance_ops", "delivery_ops", "integration"]


def seed(apps, schema_editor):
    Queue = apps.get_model("exceptions", "Queue")
    RuleSetting = apps.get_model("exceptions", "RuleSetting")
    SlaPolicy = apps.get_model("exceptions", "SlaPolicy")
    queues = {slug: Queue.objects.get_or_create(slug=slug, defaults={"name": name})[0]
              for slug, name in QUEUES}
    for slug in ("integration", "finance-ops", "delivery-ops"):
        queues[slug].escalation_queue = queues["escalations"]
        queues[slug].save()
    for case_type, (queue, severity, parameters) in RULES.items():
        RuleSetting.objects.get_or_create(case_type=case_type, defaults={
            "queue": queues[queue], "severity": severity, "parameters": parameters})
    for severity, (response, resolution) in POLICIES.items():
        SlaPolicy.objects.get_or_create(case_type="", severity=severity, defaults={
            "response_minutes": response, "resolution_minutes": resolution,
            "escalate_move_queue": severity in ("critical", "high")})


def grant_triage(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    case_type, _ = ContentType.objects.get_or_create(app_label="exceptions", model="case")
    triage, _ = Permission.objects.get_or_create(
        codename="triage_case", content_type=case_type,
        defaults={"name": "Can triage exception cases"})
    for name in WORKING_GROUPS:
        Group.objects.get_or_create(name=name)[0].permissions.add(triage)


class Migration(migrations.Migration):
    dependencies = [
        ("exceptions", "0001_cases_queues_policies"),
        ("opsview", "0002_role_groups"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(seed, migrations.RunPython.noop),
        migrations.RunPython(grant_triage, migrations.RunPython.noop),
    ]
