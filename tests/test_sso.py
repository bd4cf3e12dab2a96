"""Single sign-on end to end: a real OpenID provider (oidc-provider-mock, built on authlib)
runs on loopback; OpsView's login redirects to it, the person authorizes, and the callback
exchanges the code, checks the signed ID token against the provider's keys, and logs the
person in with the roles the provider's `groups` claim maps to."""
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth.models import User
from oidc_provider_mock import User as ProviderUser
from oidc_provider_mock import run_server_in_thread

from opsview.models import AuditEvent
from tests.conftest import PASSWORD, make_role_user

PEOPLE = [
    ProviderUser(sub="ann-1", claims={"email": "ann@example.com", "preferred_username": "ann",
                                      "given_name": "Ann", "groups": ["fin-ops", "staff"]}),
    ProviderUser(sub="root-1", claims={"email": "root@example.com",
                                       "preferred_username": "boss",
                                       "groups": ["opsview-admins"]}),
    ProviderUser(sub="guest-1", claims={"email": "guest@example.com",
                                        "preferred_username": "guest", "groups": ["staff"]}),
]


@pytest.fixture(scope="module")
def provider():
    with run_server_in_thread(user_claims=PEOPLE) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def sso(provider, settings):
    """OpsView configured as the environment variables would (docs/operations.md)."""
    discovery = requests.get(f"{provider}/.well-known/openid-configuration", timeout=5).json()
    settings.OIDC_ENABLED = True
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = "opsview", "s3cret"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = discovery["authorization_endpoint"]
    settings.OIDC_OP_TOKEN_ENDPOINT = discovery["token_endpoint"]
    settings.OIDC_OP_USER_ENDPOINT = discovery["userinfo_endpoint"]
    settings.OIDC_OP_JWKS_ENDPOINT = discovery["jwks_uri"]
    settings.OIDC_VERIFY_KID = False  # this provider has one key and names none in its tokens
    settings.OIDC_ROLE_MAP = {"fin-ops": "finance_ops", "opsview-admins": "admin"}
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend",
                                        "config.sso.RoleMappingBackend"]
    return provider


def log_in_as(client, sub):
    """The browser's walk: OpsView → the provider's consent → OpsView's callback."""
    start = client.get("/oidc/authenticate/?next=/exceptions/")
    assert start.status_code == 302
    authorize = start["Location"]
    assert authorize.startswith(f"{urlsplit(authorize).scheme}://localhost")
    consent = requests.post(authorize, data={"sub": sub}, allow_redirects=False, timeout=5)
    assert consent.status_code == 302
    back = urlsplit(consent.headers["Location"])
    assert back.path == "/oidc/callback/" and "code" in parse_qs(back.query)
    return client.get(f"{back.path}?{back.query}")


def test_a_provider_login_maps_claims_to_roles(client, sso, db):
    response = log_in_as(client, "ann-1")
    assert response.status_code == 302 and response["Location"] == "/exceptions/"
    ann = User.objects.get(username="ann")
    assert (ann.email, ann.first_name) == ("ann@example.com", "Ann")
    assert list(ann.groups.values_list("name", flat=True)) == ["finance_ops"]
    assert ann.has_perm("exceptions.triage_case") and not ann.is_staff
    assert client.get("/exceptions/").status_code == 200  # logged in
    assert AuditEvent.objects.filter(action="sso.user_created", target="user:ann").exists()


def test_an_admin_role_makes_staff_and_roles_follow_the_provider(client, sso, db, settings):
    log_in_as(client, "root-1")
    boss = User.objects.get(username="boss")
    assert boss.is_staff and boss.is_superuser
    settings.OIDC_ROLE_MAP = {"opsview-admins": "executive"}  # the provider's role changed
    client.logout()
    log_in_as(client, "root-1")
    boss.refresh_from_db()
    assert not boss.is_staff and list(boss.groups.values_list("name", flat=True)) == [
        "executive"]


def test_someone_without_a_mapped_role_is_refused(client, sso, db):
    response = log_in_as(client, "guest-1")
    assert response.status_code == 302 and "sso=failed" in response["Location"]
    assert not User.objects.filter(username="guest").exists()
    assert client.get("/").status_code == 302  # not logged in
    page = client.get(response["Location"]).content.decode()
    assert "no OpsView role" in page and "Log in with single sign-on" in page


def test_password_login_stays_and_sso_is_off_without_its_settings(client, db):
    make_role_user("dan", "finance_ops")
    assert client.get("/oidc/authenticate/").status_code == 404
    assert "single sign-on" not in client.get("/accounts/login/").content.decode()
    assert client.post("/accounts/login/", {"username": "dan",
                                            "password": PASSWORD}).status_code == 302
