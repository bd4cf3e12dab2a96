"""The API reference at /api/docs/: rendered here from the OpenAPI document."""
import re

from reporting.openapi import document


def test_the_reference_lists_every_operation_and_schema(client, logged_in):
    logged_in("integration")
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    spec = document()
    for path, item in spec["paths"].items():
        for method in ("get", "post"):
            if method in item:
                assert f'id="{item[method]["operationId"]}"' in html, (method, path)
    for name in spec["components"]["schemas"]:
        assert f'id="schema-{name}"' in html, name
    assert 'href="#schema-WipKpi"' in html  # a response names its schema as a link
    assert "<script" not in re.sub(r'<script src="/static/[^"]+"[^>]*></script>', "", html)


def test_the_reference_needs_login_and_is_in_the_nav(client, logged_in):
    assert client.get("/api/docs/").status_code == 302
    logged_in("executive")
    assert 'href="/api/docs/"' in client.get("/").content.decode()


def test_staff_see_the_admin_in_the_nav(client, role_user):
    user = role_user("boss", "executive", is_staff=True)
    client.force_login(user)
    assert 'href="/admin/"' in client.get("/").content.decode()
    client.force_login(role_user("plain", "executive"))
    assert 'href="/admin/"' not in client.get("/").content.decode()


def test_the_admin_is_branded_and_names_models_in_good_english(client, role_user):
    from django.contrib.auth.models import User

    User.objects.create_superuser("root", "root@example.com", "x")
    client.force_login(User.objects.get(username="root"))
    html = client.get("/admin/").content.decode()
    assert "OpsView administration" in html and "Django administration" not in html
    assert "Duplicate deliveries" in html and "deliverys" not in html
    assert "Deliveries" in html and "Case entries" in html
    assert "API tokens" in html and "FX rates" in html and "WIP spans" in html
