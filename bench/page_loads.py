"""Cold and warm load time of every page of the demo, in headless Chromium.

Builds the demo (bench/demo_site.py), logs each page's user in, and for each page:

- cold: a fresh browser context (empty HTTP cache, only the session cookie) navigates to the
  page; the time is from the start of navigation to network idle, i.e. to the end of the
  last response of the page, its scripts and styles and the htmx panels it pulls in (measured
  from the responses, so Playwright's 500 ms quiet window is not counted);
- warm: the same context navigates to the page again (static files from the browser cache,
  the panels from the server's short panel cache).

Reports per page the median of `--rounds` cold and warm loads, the bytes transferred cold
(as sent: compressed) and the number of requests, as a table (and JSON with `--json`).
Usage: python bench/page_loads.py [--rounds 3] [--pages overview,wip] [--port 8798]
Figures: docs/operations.md ("Page loads").
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_site import CHROMIUM, CHROMIUM_ARGS, first_case_url, log_in, served_demo

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request

PAGES = [  # (name, path, user)
    ("overview", "/", "cfo"), ("readiness", "/readiness/", "finance"), ("wip", "/wip/", "cfo"),
    ("latency", "/latency/", "finance"), ("integration", "/integration/", "integration"),
    ("margin", "/margin/", "cfo"), ("billing", "/billing/", "cfo"),
    ("close", "/close/", "finance"), ("reconciliation", "/reconciliation/", "finance"),
    ("trends", "/trends/", "cfo"), ("exceptions", "/exceptions/", "finance"),
    ("case", "{case}", "finance"), ("api-docs", "/api/docs/", "integration"),
]


def load(page: Page, url: str) -> tuple[float, int, int]:
    """(ms from navigation start to the end of the last response, bytes, requests)."""
    finished = []

    def done(request: Request) -> None:
        sizes = request.sizes()
        finished.append((time.perf_counter(), sizes["responseBodySize"]
                         + sizes["responseHeadersSize"]))

    page.on("requestfinished", done)
    start = time.perf_counter()
    page.goto(url, wait_until="networkidle")
    page.remove_listener("requestfinished", done)
    last = max((at for at, _ in finished), default=time.perf_counter())
    return (last - start) * 1000, sum(size for _, size in finished), len(finished)


def measure(base: str, pages: list[str], rounds: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        sessions, case_url = {}, None
        for _, _, user in pages:
            if user not in sessions:
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                page = context.new_page()
                log_in(page, base, user)
                if case_url is None and user == "finance":
                    case_url = first_case_url(page, base)
                sessions[user] = context.storage_state()
                context.close()
        for name, path, user in pages:
            url = base + path.format(case=case_url or "/exceptions/")
            cold, warm = [], []
            for _ in range(rounds):
                context = browser.new_context(viewport={"width": 1440, "height": 900},
                                              storage_state=sessions[user])
                page = context.new_page()
                cold.append(load(page, url))
                warm.append(load(page, url))
                context.close()
            results.append({"page": name, "path": path if "{" not in path else "/exceptions/<id>/",
                            "cold_ms": round(statistics.median(c[0] for c in cold)),
                            "warm_ms": round(statistics.median(w[0] for w in warm)),
                            "cold_kb": round(statistics.median(c[1] for c in cold) / 1024),
                            "cold_requests": cold[0][2], "warm_requests": warm[0][2]})
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pages", default="", help="comma-separated names (default: all)")
    parser.add_argument("--port", type=int, default=8798)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--months", type=int, help="a shorter demo firm (tests)")
    args = parser.parse_args()
    wanted = set(filter(None, args.pages.split(",")))
    pages = [p for p in PAGES if not wanted or p[0] in wanted]
    with served_demo(args.port, months=args.months) as base:
        results = measure(base, pages, args.rounds)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"{'page':<16}{'cold ms':>9}{'warm ms':>9}{'cold kB':>9}{'requests':>10}")
    for r in results:
        print(f"{r['page']:<16}{r['cold_ms']:>9}{r['warm_ms']:>9}{r['cold_kb']:>9}"
              f"{r['cold_requests']:>6} / {r['warm_requests']}")


if __name__ == "__main__":
    main()
