import time
import urllib.request
from typing import Any

from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

DEMO_USERS = [
    ("finance", "finance_ops", "Fiona", "Finance ops"),
    ("delivery", "delivery_ops", "Dev", "Delivery ops"),
    ("integration", "integration", "Ines", "Integration"),
    ("cfo", "executive", "Carla", "CFO"),
]
PASSWORD = "opsview-demo"


class Command(BaseCommand):
    help = "Create one demo user per role and an admin (idempotent); prints the credentials."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--credentials", action="store_true",
                            help="only print the credentials (`make demo` ends with them)")
        parser.add_argument("--wait-for", metavar="URL", default="",
                            help="with --credentials: first wait until URL answers, so the "
                                 "credentials come after the server's own start-up lines")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["credentials"]:
            if options["wait_for"]:
                self._wait_for(options["wait_for"])
            return self._credentials(
                [(u, role) for u, role, _, _ in DEMO_USERS] + [("admin", "administrator")],
                options["wait_for"])
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
        self._credentials(rows)

    def _credentials(self, rows: list[tuple[str, str]], url: str = "") -> None:
        if url:
            self.stdout.write(f"\nOpsView demo: {url}")
        self.stdout.write(f"Demo users (password for all: {PASSWORD}):")
        for username, role in rows:
            self.stdout.write(f"  {username:<12} {role}")

    @staticmethod
    def _wait_for(url: str, seconds: int = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                return
            except OSError:
                time.sleep(0.5)
