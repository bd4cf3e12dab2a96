"""Logging in as a person does, in headless Chromium."""
import pytest

from tests.conftest import screenshot

pytestmark = pytest.mark.browser


def test_a_person_is_sent_to_login_and_lands_where_they_were_going(page, browser_login):
    page.goto(page.base_url + "/")
    assert "/accounts/login/" in page.url
    screenshot(page, "login")
    browser_login("finance_ops")
    # Without a page to go back to, a triager lands on their queue (LOGIN_REDIRECT_URL).
    assert page.url == page.base_url + "/exceptions/?work=finance-ops&sort=mine"
    assert page.locator(".usermenu").inner_text().startswith("Finance Ops")


def test_a_wrong_password_is_refused_with_a_message(page, role_user):
    role_user("ann", "executive")
    page.goto(page.base_url + "/accounts/login/")
    page.fill("#id_username", "ann")
    page.fill("#id_password", "not-the-password")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").is_visible()
    assert "/accounts/login/" in page.url
