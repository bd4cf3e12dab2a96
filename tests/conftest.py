"""Shared fixtures: a signing source, event delivery through the real webhook, role users,
and a headless Chromium page driven by Playwright."""
import os

import pytest
from django.contrib.auth.models import Group, User

from config.celery import app as celery_app
from ingestion import pipeline
from ingestion.events import make_event, signed_request
from ingestion.models import Source

ROLES = ["finance_ops", "delivery_ops", "integration", "executive"]
PASSWORD = "opsview-test-pass-1"


@pytest.fixture(autouse=True)
def _eager_celery(settings):
    """Tests run tasks in-process unless they start a real worker (tests/…/test_worker*.py)."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    settings.CELERY_TASK_ALWAYS_EAGER = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _fresh_panels(settings):
    """Panels are computed on every request in tests (test_pages.py checks the cache)."""
    settings.PANEL_CACHE_SECONDS = 0


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def case(db):
    """One open case: invoice I1 blocked, USD 1,200 at stake, in the finance-ops queue."""
    from exceptions import services
    from exceptions.models import Case, Queue

    queue = Queue.objects.get(slug="finance-ops")
    case = Case(type="invoice_blocked", fingerprint="I1", title="Invoice I1 blocked",
                severity="high", queue=queue, object_kind="invoice", object_id="I1",
                money_at_stake=1200, currency="USD")
    services.refresh_sla(case)
    case.save()
    return case


@pytest.fixture
def source(db):
    return Source.objects.create(slug="mulesoft", name="MuleSoft", rate_limit_per_minute=0)


class Delivery:
    """Posts events through the real webhook, signed with the source's secret."""

    def __init__(self, client, source):
        self.client = client
        self.source = source

    def post(self, events, **kwargs):
        body, headers = signed_request(self.source.secret, events, **kwargs)
        content_type = headers.pop("content-type")
        return self.client.post(f"/ingest/{self.source.slug}/events", data=body,
                                content_type=content_type, headers=headers)

    def send(self, *events):
        """Deliver events as one batch and return the parsed 202 body."""
        response = self.post(list(events))
        assert response.status_code == 202, response.content
        return response.json()


@pytest.fixture
def deliver(client, source):
    return Delivery(client, source)


@pytest.fixture
def event():
    return make_event


@pytest.fixture
def process():
    """Drain the inbox synchronously (as a worker would)."""
    return pipeline.drain_inbox


def make_role_user(username, role=None, **extra):
    user = User.objects.create_user(username=username, password=PASSWORD, **extra)
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def role_user(db):
    return make_role_user


@pytest.fixture
def logged_in(client, db):
    """A client logged in as a user of the given role."""

    def login(role="finance_ops", username=None):
        user = make_role_user(username or f"{role}_user", role)
        client.force_login(user)
        return user

    return login


# --- Browser ------------------------------------------------------------------------------
CHROMIUM = os.environ.get("OPSVIEW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "artifacts")


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("OPSVIEW_REQUIRE_BROWSER"):
            pytest.fail(f"Chromium not installed at {CHROMIUM}")
        pytest.skip(f"Chromium not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop; Django must allow ORM calls beside it.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def reseed():
    """Re-run the data migrations (idempotent): a live-server test flushes the tables."""
    import importlib

    from django.apps import apps

    importlib.import_module("opsview.migrations.0002_role_groups").create_groups(apps, None)
    defaults = importlib.import_module("exceptions.migrations.0002_default_queues_rules_policies")
    defaults.seed(apps, None)
    defaults.grant_triage(apps, None)
    importlib.import_module("exceptions.migrations.0003_case_began_at").seed_expense_rule(
        apps, None)


@pytest.fixture
def page(browser, live_server, django_db_serialized_rollback):
    # Serialized rollback restores what migrations seeded; reseeding makes sure of it.
    reseed()
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.base_url = live_server.url
    # The Content-Security-Policy allows the app's own scripts only: a page that needs an
    # inline script, eval or a foreign origin shows up here as a violation.
    violations = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.on("pageerror", lambda error: violations.append(str(error))
            if "Content Security Policy" in str(error) else None)
    yield page
    context.close()
    assert not violations, f"Content-Security-Policy violations: {violations}"


@pytest.fixture
def browser_login(page):
    """Log a new user of `role` in through the login form; returns the page."""

    def login(role="finance_ops", username=None):
        username = username or f"{role}_browser"
        make_role_user(username, role, first_name=role.replace("_", " ").title())
        page.goto(page.base_url + "/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/accounts/login" not in url)
        return page

    return login


def screenshot(page, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    return path
