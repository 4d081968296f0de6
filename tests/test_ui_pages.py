"""The pages' common ground, in a real browser: every page is served under /ui/
with a policy that lets it reach this daemon only, loads without a script error,
and asks nothing of any other host."""

from __future__ import annotations

import httpx

from browser import chromium, demo_hall_daemon, open_page, shot  # noqa: F401 (fixtures)

PAGES = ["kiosk", "window", "display", "diagnostics", "supervisor", "rate"]


def test_every_page_is_served_with_a_policy_that_keeps_it_inside_the_hall(demo_hall_daemon):
    with httpx.Client(base_url=demo_hall_daemon.url) as http:
        for name in PAGES:
            r = http.get(f"/ui/{name}")
            assert r.status_code == 200, name
            assert r.headers["content-type"].startswith("text/html")
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp
            assert "http" not in r.text.split("<body")[0].replace("http-equiv", ""), \
                f"{name} names another host in its head"
        assert http.get("/ui/nothing").status_code == 404
        assert http.get("/ui/static/kioskd.js").headers["content-type"].startswith(
            ("text/javascript", "application/javascript"))


def test_every_page_loads_in_the_browser_without_an_error_or_another_host(demo_hall_daemon,
                                                                          open_page):
    """open_page fails the test on a script error, a policy violation that throws,
    or any request to another host; /ui/ lists every page."""
    index = open_page(f"{demo_hall_daemon.url}/ui/")
    assert [a.get_attribute("href") for a in index.locator("a").all()] == [
        f"/ui/{name}" for name in PAGES]
    for name in PAGES:
        page = open_page(f"{demo_hall_daemon.url}/ui/{name}")
        page.wait_for_load_state("load")          # module scripts have run
        assert page.evaluate("document.querySelectorAll('script[type=module]').length") >= 1


def test_the_api_docs_render_under_the_same_policy(demo_hall_daemon, open_page):
    """/docs (fastapi-offline: no CDN) under the pages' policy, its one inline
    start-up script allowed by its hash: it renders, and asks no other host. (ReDoc
    is not served: it fetches its logo from its maker's CDN.)"""
    with httpx.Client(base_url=demo_hall_daemon.url) as http:
        for path in ("/docs", "/docs/oauth2-redirect"):
            csp = http.get(path).headers["content-security-policy"]
            assert "default-src 'self'" in csp and "connect-src 'self'" in csp
            assert "unsafe-eval" not in csp and "http" not in csp
        assert http.get("/redoc").status_code == 404
    docs = open_page(f"{demo_hall_daemon.url}/docs")
    docs.wait_for_selector('.swagger-ui [data-path="/api/v1/tickets"]')
    shot(docs, "api-docs")
