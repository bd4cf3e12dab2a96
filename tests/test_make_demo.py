"""`make demo`: another port with PORT=, and the credentials printed last."""
import shutil
import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")
def test_make_demo_serves_on_the_port_asked_and_prints_the_credentials_after_the_simulator():
    plan = subprocess.run(["make", "-n", "demo", "PORT=8123"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout
    assert "runserver 127.0.0.1:8123" in plan
    simulator = plan.index("simulate --size small")
    credentials = plan.index("setup_demo --credentials")
    assert simulator < credentials
    assert "--wait-for http://127.0.0.1:8123/" in plan


def test_the_credentials_name_every_demo_user_and_the_address(db):
    out = StringIO()
    call_command("setup_demo", "--credentials", stdout=out)
    text = out.getvalue()
    for user in ("finance", "delivery", "integration", "cfo", "admin"):
        assert f"  {user}" in text
    assert "opsview-demo" in text
    from django.contrib.auth.models import User

    assert not User.objects.exists()  # --credentials only prints
