from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand

DEMO_USERS = [
    ("finance", "finance_ops", "Fiona", "Finance ops"),
    ("delivery", "delivery_ops", "Dev", "Delivery ops"),
    ("integration", "integration", "Ines", "Integration"),
    ("cfo", "executive", "Carla", "CFO"),
]
PASSWORD = "opsview-demo"


class Command(BaseCommand):
    help = "Create one demo user per role and an admin (idempotent); prints the credentials."

    def handle(self, *args, **options):
        rows = []
        for username, role, first, last in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username, defaults={
                "first_name": first, "last_name": last, "email": f"{username}@example.com"})
            user.set_password(PASSWORD)
            user.save()
            user.groups.set([Group.objects.get(name=role)])
            rows.append((username, role))
        admin, _ = User.objects.get_or_create(username="admin", defaults={
            "is_staff": True, "is_superuser": True, "email": "admin@example.com"})
        admin.set_password(PASSWORD)
        admin.save()
        rows.append(("admin", "administrator"))
        # Severity by money at stake (exceptions' own command: opsview does not import it).
        call_command("seed_money_thresholds", stdout=self.stdout)
        self.stdout.write("Demo users (password for all: %s):" % PASSWORD)
        for username, role in rows:
            self.stdout.write(f"  {username:<12} {role}")
