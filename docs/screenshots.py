"""Screenshots of the demo firm's pages, as people see them: `python docs/screenshots.py`.

Builds the demo in a temporary SQLite database (demo users, the small simulated firm, every
rule evaluated), serves it, logs in as each user the page is for and saves a full-page PNG
of each page at 1440 px (and at 390 px with `--phone`) under artifacts/screens/. With
`--readme` the overview also replaces docs/screenshot-overview.png. Needs the test extras
(Playwright) and Chromium at /usr/bin/chromium.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [  # (file name, path, user)
    ("overview", "/", "cfo"),
    ("wip", "/wip/", "cfo"),
    ("readiness", "/readiness/", "finance"),
    ("latency", "/latency/", "finance"),
    ("integration", "/integration/", "integration"),
    ("margin", "/margin/", "cfo"),
    ("exceptions", "/exceptions/", "finance"),
]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--phone", action="store_true", help="also at 390 px")
    parser.add_argument("--readme", action="store_true",
                        help="replace docs/screenshot-overview.png")
    parser.add_argument("--period", default="",
                        help="billing period of the dashboards, YYYY-MM (default: this month)")
    args = parser.parse_args()
    out = os.path.join(ROOT, "artifacts", "screens")
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="opsview-screens-")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{work}/demo.sqlite3", "DEBUG": "1",
           "CELERY_BROKER_URL": "", "REDIS_URL": ""}
    manage = [sys.executable, os.path.join(ROOT, "manage.py")]
    for command in (["migrate", "--noinput", "-v0"], ["setup_demo"],
                    ["simulate", "--size", "small", "--process"], ["process_inbox"]):
        print("manage.py", " ".join(command), flush=True)
        subprocess.run(manage + command, env=env, check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen(manage + ["runserver", "--noreload", f"127.0.0.1:{args.port}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(60):
            try:
                urllib.request.urlopen(base + "/accounts/login/", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        shoot(base, out, args)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def shoot(base, out, args):
    from playwright.sync_api import sync_playwright

    widths = [1440] + ([390] if args.phone else [])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=CHROMIUM_ARGS)
        for width in widths:
            contexts = {}
            for name, path, user in PAGES:
                if user not in contexts:
                    context = browser.new_context(viewport={"width": width, "height": 900})
                    page = context.new_page()
                    page.goto(base + "/accounts/login/")
                    page.fill("#id_username", user)
                    page.fill("#id_password", "opsview-demo")
                    page.click("button[type=submit]")
                    page.wait_for_url(lambda url: "/accounts/login" not in url)
                    contexts[user] = page
                page = contexts[user]
                query = f"?period={args.period}" if args.period and name != "exceptions" else ""
                page.goto(base + path + query)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(800)  # charts finish drawing
                target = os.path.join(out, f"{name}-{width}.png")
                page.screenshot(path=target, full_page=True)
                # The first screenful and a half, what a person takes in at a glance.
                page.screenshot(path=target.replace(".png", "-top.png"), full_page=True,
                                clip={"x": 0, "y": 0, "width": width, "height": 1400})
                print(target, flush=True)
                if args.readme and name == "overview" and width == 1440:
                    shutil.copy(target, os.path.join(ROOT, "docs", "screenshot-overview.png"))
        browser.close()


if __name__ == "__main__":
    main()
