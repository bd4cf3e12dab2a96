"""Every page needs login; the login page works; role groups exist."""
import pytest
from django.contrib.auth.models import Group


def test_anonymous_user_is_sent_to_login(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_admin_needs_staff(client, logged_in):
    logged_in("finance_ops")
    response = client.get("/admin/")
    assert response.status_code == 302 and "login" in response["Location"]


def test_login_page_logs_a_user_in(client, role_user):
    role_user("ann", "finance_ops")
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b"Log in" in page.content
    response = client.post("/accounts/login/", {"username": "ann",
                                                "password": "opsview-test-pass-1"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("role", ["finance_ops", "delivery_ops", "integration", "executive"])
def test_role_groups_are_created_by_migration(db, role):
    assert Group.objects.filter(name=role).exists()


def test_webhook_and_schemas_need_no_login(client, db):
    assert client.get("/ingest/schemas/").status_code == 200
    assert client.post("/ingest/none/events", data="{}",
                       content_type="application/cloudevents+json").status_code == 401
