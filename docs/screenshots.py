"""Screenshots of every page of the demo firm, as people see them: `python docs/screenshots.py`.

Builds and serves the demo (bench/demo_site.py), logs in as each user the page is for and
saves a full-page PNG of each page at 1440 px and at 390 px (a phone) under
artifacts/screens/, plus the first 1,400 px of each. With `--readme` the overview at
1440 px also replaces docs/screenshot-overview.png. Needs the test extras (Playwright) and
Chromium at /usr/bin/chromium.
"""
import argparse
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from demo_site import CHROMIUM, CHROMIUM_ARGS, first_case_url, log_in, served_demo  # noqa: E402

PAGES = [  # (file name, path, user); None: not logged in
    ("login", "/accounts/login/", None),
    ("overview", "/", "cfo"),
    ("readiness", "/readiness/", "finance"),
    ("wip", "/wip/", "cfo"),
    ("latency", "/latency/", "finance"),
    ("integration", "/integration/", "integration"),
    ("margin", "/margin/", "cfo"),
    ("billing", "/billing/", "cfo"),
    ("close", "/close/", "finance"),
    ("reconciliation", "/reconciliation/", "finance"),
    ("trends", "/trends/", "cfo"),
    ("exceptions", "/exceptions/", "finance"),
    ("case", "{case}", "finance"),
    ("item", "{item}", "finance"),
    ("api-docs", "/api/docs/", "integration"),
    ("admin", "/admin/", "admin"),
]
WIDTHS = [1440, 390]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--readme", action="store_true",
                        help="replace docs/screenshot-overview.png")
    parser.add_argument("--period", default="",
                        help="billing period of the dashboards, YYYY-MM (default: this month)")
    parser.add_argument("--pages", default="", help="comma-separated names (default: all)")
    args = parser.parse_args()
    out = os.path.join(ROOT, "artifacts", "screens")
    os.makedirs(out, exist_ok=True)
    wanted = set(filter(None, args.pages.split(",")))
    with served_demo(args.port) as base:
        shoot(base, out, args, [p for p in PAGES if not wanted or p[0] in wanted])


def shoot(base: str, out: str, args: argparse.Namespace,
          pages: list[tuple[str, str, str | None]]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for width in WIDTHS:
            sessions, links = {}, {}
            for name, path, user in pages:
                if user not in sessions:
                    context = browser.new_context(viewport={"width": width, "height": 900})
                    sessions[user] = context.new_page()
                    if user:
                        log_in(sessions[user], base, user)
                page = sessions[user]
                if "{" in path and not links:
                    links["case"] = first_case_url(page, base)
                    # An item behind a reconciliation gap of last month.
                    page.goto(base + "/reconciliation/", wait_until="networkidle")
                    items = page.locator("a[href*='/items/']")
                    links["item"] = (items.first.get_attribute("href") if items.count()
                                     else "/items/invoice/unknown/")
                url = base + path.format(**links)
                dashboard = path.count("/") == 2 or path == "/"
                page.goto(url + (f"?period={args.period}" if args.period and dashboard
                                 and name not in ("exceptions", "login", "admin") else ""))
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(800)  # charts finish drawing
                target = os.path.join(out, f"{name}-{width}.png")
                page.screenshot(path=target, full_page=True)
                # The first screenful and a half, what a person takes in at a glance.
                page.screenshot(path=target.replace(".png", "-top.png"), full_page=True,
                                clip={"x": 0, "y": 0, "width": width, "height": 1400})
                print(target, flush=True)
                if args.readme and name == "overview" and width == 1440:
                    shutil.copy(target.replace(".png", "-top.png"),
                                os.path.join(ROOT, "docs", "screenshot-overview.png"))
        browser.close()


if __name__ == "__main__":
    main()
