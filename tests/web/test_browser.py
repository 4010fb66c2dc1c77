"""The UI in a real browser: Debian's Chromium driven by Playwright against a
live ``modelyard server`` with auth on.

Playwright's own browser download cannot run here; it drives
``/usr/bin/chromium`` through ``executable_path`` (``make system-deps``
installs it). The pages hold no script at all, so the browser runs with
JavaScript off: reading, searching, paging and comparing work without it.

Screenshots of every main page go to ``<pytest basetemp>/screenshots/``
(e.g. ``/tmp/pytest-of-root/pytest-N/screenshots/``); the test prints where.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth_helpers import ADMIN_TOKEN, bearer
from tests.conftest_server import start_server, stop_server
from tests.helpers import sha

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# TRAPS.md: without these its start stalls on network lookups.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]


def _chromium_missing() -> str | None:
    if not CHROMIUM.exists():
        return "Debian's chromium is not installed (make system-deps)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (the dev extra)"
    return None


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live server with auth on and a small registry to look at."""
    reason = _chromium_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    env = {
        "MODELYARD_AUTH": "on",
        "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN,
        # Webhooks of these tests go to receivers on this machine.
        "MODELYARD_WEBHOOK_ALLOW": "127.0.0.1",
    }
    proc, url = start_server(tmp_path_factory.mktemp("ui-server"), extra_env=env)
    try:
        with httpx.Client(base_url=url, headers=bearer(ADMIN_TOKEN), timeout=10) as api:
            _seed(api)
        yield url
    finally:
        stop_server(proc)


def _push(api: httpx.Client, name: str, files: dict[str, bytes], **extra: Any) -> None:
    manifest = []
    for path, data in files.items():
        digest = sha(data)
        assert api.put(f"/api/v1/blobs/{digest}", content=data).status_code in (200, 201)
        manifest.append({"path": path, "digest": digest, "size": len(data)})
    r = api.post(f"/api/v1/models/default/{name}/versions", json={"files": manifest, **extra})
    assert r.status_code == 201, r.text


def _seed(api: httpx.Client) -> None:
    r = api.post(
        "/api/v1/models",
        json={
            "name": "fraud-detector",
            "description": "Scores card payments.\n\n* **input**: 32 features\n* owner: risk team",
            "tags": {"team": "fraud", "task": "classification"},
            "metadata": {"owner": "risk", "sla_ms": 20},
        },
    )
    assert r.status_code == 201, r.text
    sig = {"inputs": [{"name": "features", "dtype": "float32", "shape": [-1, 32]}]}
    _push(
        api,
        "fraud-detector",
        {"model.onnx": b"v1", "labels.txt": b"ok\nfraud"},
        framework="onnx",
        metrics={"auc": 0.91, "latency_ms": 12.0},
        params={"depth": "6"},
        signature=sig,
        lineage={"source_run": "run-17", "code_ref": "git:1a2b3c"},
    )
    _push(
        api,
        "fraud-detector",
        {"model.onnx": b"v2", "labels.txt": b"ok\nfraud", "t.json": b"{}"},
        framework="onnx",
        metrics={"auc": 0.94, "latency_ms": 10.5},
        params={"depth": "8"},
        signature={"inputs": [{"name": "features", "dtype": "float16", "shape": [-1, 32]}]},
        lineage={
            "parent": "fraud-detector/1",
            "relation": "finetuned",
            "source_run": "run-21",
            "datasets": ["payments@2026-11"],
        },
    )
    api.post("/api/v1/models/default/fraud-detector/versions/1/publish")
    api.put(
        "/api/v1/models/default/fraud-detector/aliases/production",
        json={"version": "1", "reason": "first release"},
    )
    api.post("/api/v1/models", json={"name": "churn", "tags": {"team": "growth"}})
    _push(api, "churn", {"model.pkl": b"c1"}, framework="sklearn", metrics={"auc": 0.8})


def test_search_open_model_and_version_compare_with_screenshots(
    ui_server: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from playwright.sync_api import sync_playwright

    shots = tmp_path_factory.getbasetemp() / "screenshots"
    shots.mkdir(exist_ok=True)
    csp_violations: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                java_script_enabled=False, viewport={"width": 1280, "height": 900}
            )
            page = context.new_page()
            page.on(
                "console",
                lambda m: (
                    csp_violations.append(m.text) if "Content Security Policy" in m.text else None
                ),
            )

            # Auth is on: the home page asks to sign in; the form takes a token.
            page.goto(ui_server + "/")
            assert "UNAUTHENTICATED" in page.inner_text("main")
            page.screenshot(path=str(shots / "01-unauthenticated.png"), full_page=True)
            page.click("text=Sign in with a token")
            page.fill("#token", ADMIN_TOKEN)
            page.screenshot(path=str(shots / "02-sign-in.png"), full_page=True)
            page.click("button:has-text('Sign in')")
            assert page.url == ui_server + "/"
            assert "admin" in page.inner_text("header")
            page.screenshot(path=str(shots / "03-models.png"), full_page=True)

            # Search with a filter: only the matching model is left.
            page.fill("#q", "tags.team = 'fraud'")
            page.click("button:has-text('Search')")
            rows = page.locator("table.results tbody tr")
            assert rows.count() == 1 and "fraud-detector" in rows.first.inner_text()
            assert "@production" in rows.first.inner_text() or "v2" in rows.first.inner_text()
            page.screenshot(path=str(shots / "04-search.png"), full_page=True)

            # A bad filter shows where it goes wrong, inline.
            page.fill("#q", "tags.team = ")
            page.click("button:has-text('Search')")
            assert "INVALID_FILTER" in page.inner_text("#filter-error")
            page.screenshot(path=str(shots / "05-bad-filter.png"), full_page=True)

            # Open the model: description, alias timeline, versions with a metric column.
            page.goto(ui_server + "/?q=name+%3D+%27fraud-detector%27")
            page.click("table.results >> text=fraud-detector")
            assert page.url.endswith("/models/default/fraud-detector")
            assert "Scores card payments." in page.inner_text(".prose")
            assert "first release" in page.inner_text("ol.timeline")
            page.check("input[name=metric][value=auc]")
            page.click("button:has-text('Show')")
            assert "metric=auc" in page.url
            assert "0.94" in page.inner_text("table.results")
            page.screenshot(path=str(shots / "06-model.png"), full_page=True)

            # Open a version: files with download links, lineage, signature, events.
            page.click("table.results >> text=v2")
            assert page.url.endswith("/models/default/fraud-detector/versions/2")
            body = page.inner_text("main")
            for fact in ("model.onnx", "t.json", "run-21", "payments@2026-11", "finetuned"):
                assert fact in body, fact
            link = page.locator("a:has-text('Download')").first.get_attribute("href")
            assert link is not None and link.startswith("/api/v1/models/default/fraud-detector/")
            page.screenshot(path=str(shots / "07-version.png"), full_page=True)

            # The signed-in browser may follow the download link (session cookie).
            download = context.request.get(ui_server + link)
            assert download.status == 200

            # Compare two versions from the model page's checkboxes.
            page.goto(ui_server + "/models/default/fraud-detector")
            page.check("input[name=v][value='default/fraud-detector/1']")
            page.check("input[name=v][value='default/fraud-detector/2']")
            page.click("button:has-text('Compare selected')")
            text = page.inner_text("main")
            assert "+0.03" in text  # auc 0.91 -> 0.94
            assert "inputs[0].dtype" in text and "float16" in text
            assert "t.json" in text  # added
            page.screenshot(path=str(shots / "08-compare.png"), full_page=True)

            # Act from the pages: move an alias to v2, see the timeline, roll it back.
            page.goto(ui_server + "/models/default/fraud-detector/versions/2")
            page.fill("#move-alias", "production")
            page.fill("#move-reason", "better auc")
            page.click("button:has-text('Move alias')")
            assert "@production now points at v2" in page.inner_text(".notice")
            page.screenshot(path=str(shots / "11-version-actions.png"), full_page=True)
            page.goto(ui_server + "/models/default/fraud-detector")
            assert "better auc" in page.locator("ol.timeline li").first.inner_text()
            page.click("button:has-text('roll back')")
            assert "@production rolled back to v1" in page.inner_text(".notice")
            first = page.locator("ol.timeline li").first.inner_text()
            assert "v2" in first and "v1" in first
            page.screenshot(path=str(shots / "12-rolled-back.png"), full_page=True)

            # An error is a page with its code.
            page.goto(ui_server + "/models/default/nope")
            assert "MODEL_NOT_FOUND" in page.inner_text("main")
            page.screenshot(path=str(shots / "09-not-found.png"), full_page=True)

            # A phone-sized screen in dark mode reads the same page.
            phone = browser.new_context(
                java_script_enabled=False,
                viewport={"width": 390, "height": 844},
                color_scheme="dark",
                storage_state=context.storage_state(),
            )
            small = phone.new_page()
            small.goto(ui_server + "/models/default/fraud-detector/versions/2")
            assert "model.onnx" in small.inner_text("main")
            small.screenshot(path=str(shots / "10-version-phone-dark.png"), full_page=True)

            # Sign out through the form: the next page asks to sign in again.
            page.goto(ui_server + "/")
            page.click("button:has-text('Sign out')")
            assert "/signin" in page.url
            page.goto(ui_server + "/")
            assert "UNAUTHENTICATED" in page.inner_text("main")
        finally:
            browser.close()
    assert csp_violations == []
    taken = sorted(x.name for x in shots.glob("*.png"))
    assert len(taken) == 12, taken
    print(f"\nscreenshots: {shots}")


def _user(api: httpx.Client, name: str, namespace: str, *roles: str) -> str:
    assert api.post("/api/v1/users", json={"name": name}).status_code == 201
    for role in roles:
        assert api.put(f"/api/v1/roles/{namespace}/{name}/{role}").status_code == 201
    r = api.post("/api/v1/tokens", json={"name": "ui", "user": name})
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def test_promote_with_approval_by_another_user_then_roll_back(
    ui_server: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """ana (writer) asks to publish v2 and point production at it; bob
    (reviewer) approves from the queue; ana sees the timeline move and rolls
    production back to v1."""
    from playwright.sync_api import Page, sync_playwright

    shots = tmp_path_factory.getbasetemp() / "screenshots"
    shots.mkdir(exist_ok=True)
    with httpx.Client(base_url=ui_server, headers=bearer(ADMIN_TOKEN), timeout=10) as api:
        assert api.post("/api/v1/namespaces", json={"name": "risk"}).status_code == 201
        assert api.post("/api/v1/models", json={"name": "scorer", "namespace": "risk"}).is_success
        for n in (1, 2):
            data = f"scorer {n}".encode()
            assert api.put(f"/api/v1/blobs/{sha(data)}", content=data).is_success
            files = [{"path": "model.onnx", "digest": sha(data), "size": len(data)}]
            r = api.post("/api/v1/models/risk/scorer/versions", json={"files": files})
            assert r.status_code == 201, r.text
        assert api.post("/api/v1/models/risk/scorer/versions/1/publish").is_success
        assert api.put(
            "/api/v1/models/risk/scorer/aliases/production", json={"version": "1"}
        ).is_success
        policy = {"required_approvals": 1, "protected_aliases": ["production"]}
        assert api.put("/api/v1/namespaces/risk/policy", json=policy).is_success
        # ana may review too: her own request must still offer her no approval.
        ana = _user(api, "ana", "risk", "writer", "reviewer")
        bob = _user(api, "bob", "risk", "reviewer")

    def signed_in(token: str) -> Page:
        context = browser.new_context(java_script_enabled=False)
        page = context.new_page()
        page.goto(ui_server + "/signin")
        page.fill("#token", token)
        page.click("button:has-text('Sign in')")
        return page

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            as_ana = signed_in(ana)
            as_ana.goto(ui_server + "/models/risk/scorer/versions/2")
            # Moving the protected alias directly: the policy's refusal, as a page.
            as_ana.fill("#move-alias", "production")
            as_ana.click("button:has-text('Move alias')")
            assert "POLICY_VIOLATION" in as_ana.inner_text("main")
            assert "request an approval" in as_ana.inner_text("main")
            as_ana.go_back()
            as_ana.select_option("#appr-action", "publish")
            as_ana.fill("#appr-alias", "production")
            as_ana.fill("#appr-comment", "v2 beats v1 on the holdout")
            as_ana.click("button:has-text('Request approval')")
            assert "requested" in as_ana.inner_text(".notice")
            as_ana.goto(ui_server + "/approvals?namespace=risk")
            assert "Your own request" in as_ana.inner_text("main")
            assert as_ana.locator("button:has-text('Approve')").count() == 0

            as_bob = signed_in(bob)
            as_bob.goto(ui_server + "/approvals?namespace=risk")
            as_bob.screenshot(path=str(shots / "13-approvals.png"), full_page=True)
            as_bob.fill("input[name=comment]", "looks good")
            as_bob.click("button:has-text('Approve')")
            assert "approved; it is now applied" in as_bob.inner_text(".notice")

            as_ana.goto(ui_server + "/models/risk/scorer")
            latest = as_ana.locator("ol.timeline li").first.inner_text()
            assert "v1" in latest and "v2" in latest and "bob" in latest
            as_ana.screenshot(path=str(shots / "14-promoted.png"), full_page=True)
            as_ana.click("li:has-text('@production') >> button:has-text('roll back')")
            assert "@production rolled back to v1" in as_ana.inner_text(".notice")
            as_ana.goto(ui_server + "/audit?model=risk/scorer")
            assert "alias.moved" in as_ana.inner_text("main")
            as_ana.screenshot(path=str(shots / "15-audit.png"), full_page=True)
            as_bob.goto(ui_server + "/namespaces/risk/policy")
            assert "protected aliases" in as_bob.inner_text("main")
            as_bob.screenshot(path=str(shots / "16-policy.png"), full_page=True)
        finally:
            browser.close()
    with httpx.Client(base_url=ui_server, headers=bearer(ADMIN_TOKEN), timeout=10) as api:
        now = api.get("/api/v1/models/risk/scorer/versions/production").json()
        assert now["version"] == 1


def test_open_model_page_updates_live_from_the_event_stream(ui_server: str) -> None:
    """With JavaScript on, a model page listens to the event stream: a version
    pushed and an alias moved elsewhere appear on it without a reload."""
    from playwright.sync_api import sync_playwright

    with httpx.Client(base_url=ui_server, headers=bearer(ADMIN_TOKEN), timeout=10) as api:
        assert api.post("/api/v1/models", json={"name": "live"}).status_code == 201
        _push(api, "live", {"m.onnx": b"live 1"}, framework="onnx")
        console: list[str] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_context().new_page()
                page.on("console", lambda m: console.append(m.text))
                page.goto(ui_server + "/signin")
                page.fill("#token", ADMIN_TOKEN)
                page.click("button:has-text('Sign in')")
                page.goto(ui_server + "/models/default/live")
                # The page marks itself: the script ran and the stream is open.
                page.wait_for_selector("#live-status[data-state=live]")
                page.check("input[name=v][value='default/live/1']")
                loads = []
                page.on("load", lambda _: loads.append(1))
                _push(api, "live", {"m.onnx": b"live 2"}, framework="onnx")
                page.wait_for_selector("#live-versions >> text=v2")
                r = api.put(
                    "/api/v1/models/default/live/aliases/canary",
                    json={"version": "2", "reason": "watch it live"},
                )
                assert r.status_code == 200, r.text
                page.wait_for_selector("#live-timeline >> text=watch it live")
                assert "@canary" in page.inner_text("#live-aliases")
                # Updated in place: no reload, and the ticked box is still ticked.
                assert loads == []
                assert page.is_checked("input[name=v][value='default/live/1']")
            finally:
                browser.close()
    assert [m for m in console if "Content Security Policy" in m] == []


# A model server's monitoring window as its heartbeat carries it (see
# serving/runner.py): one feature drifted, its name hostile.
HOSTILE_FEATURE = '"><img src=x onerror=alert(1)>'
MEASURES: dict[str, Any] = {
    "window_seconds": 300.0,
    "requests": 1500,
    "errors": 90,
    "error_rate": 0.06,
    "latency_p50_ms": 0.8,
    "latency_p99_ms": 14.0,
    "version": 1,
    "features": {
        HOSTILE_FEATURE: {"kind": "numeric", "count": 1500, "psi": 0.93, "ks": 0.41},
        "amount": {"kind": "numeric", "count": 1500, "psi": 0.03, "ks": 0.04},
    },
    "features_total": 2,
    "thresholds": {
        "psi": 0.2,
        "ks": 0.2,
        "error_rate": 0.05,
        "latency_p99_ms": 50.0,
        "min_requests": 20,
    },
}
DRIFT_ALERT: dict[str, Any] = {
    "environment": "prod",
    "replica": "pod-a",
    "kind": "drift",
    "version": 1,
    "detail": {
        "features": {HOSTILE_FEATURE: {"psi": 0.93, "ks": 0.41, "count": 1500}},
        "thresholds": {"psi": 0.2, "ks": 0.2},
        "window_seconds": 300,
    },
}


def test_deployment_monitoring_page(
    ui_server: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """From the navigation to a deployment's monitoring: the replica's latest
    figures with what is over its threshold marked, and its alerts; a hostile
    feature name stays text (no dialog opens)."""
    from playwright.sync_api import sync_playwright

    shots = tmp_path_factory.getbasetemp() / "screenshots"
    shots.mkdir(exist_ok=True)
    with httpx.Client(base_url=ui_server, headers=bearer(ADMIN_TOKEN), timeout=10) as api:
        beat = {
            "environment": "prod-eu",
            "reference": "fraud-detector@production",
            "replica": "pod-7",
            "status": "ready",
            "version": 1,
            "measures": MEASURES,
        }
        assert api.post("/api/v1/deployments/heartbeats", json=beat).status_code == 200
        alert = {**DRIFT_ALERT, "environment": "prod-eu", "replica": "pod-7"}
        alert["reference"] = "fraud-detector@production"
        assert api.post("/api/v1/deployments/alerts", json=alert).status_code == 200
        degraded = {
            **alert,
            "kind": "degraded",
            "detail": {"reasons": ["error_rate"], "error_rate": 0.06, "requests": 1500},
        }
        assert api.post("/api/v1/deployments/alerts", json=degraded).status_code == 200
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(java_script_enabled=False).new_page()
            page.on("dialog", lambda d: dialogs.append(d.message))
            page.goto(ui_server + "/signin")
            page.fill("#token", ADMIN_TOKEN)
            page.click("button:has-text('Sign in')")
            page.click("nav[aria-label=Main] >> text=Deployments")
            page.click("text=default/fraud-detector@production")
            page.wait_for_selector("#monitoring-title")
            figures = page.inner_text(".figures")
            assert "1500" in figures and "6.00 %" in figures and "14 ms" in figures
            over = page.locator(".figures div.over")  # only the error rate is over
            assert over.count() == 1 and "error rate" in over.inner_text().lower()
            drifted = page.locator("tr.over th")
            assert drifted.count() == 1 and HOSTILE_FEATURE in drifted.inner_text()
            alerts = page.inner_text("ol[aria-labelledby=alerts-title]")
            assert "drift" in alerts and "degraded" in alerts and HOSTILE_FEATURE in alerts
            assert alerts.index("degraded") < alerts.index("drift")  # newest first
            assert page.locator("img[src=x]").count() == 0
            page.screenshot(path=str(shots / "19-deployment-monitoring.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == []


AXE = Path(__file__).parent / "vendor" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def test_main_pages_pass_axe_core(ui_server: str) -> None:
    """axe-core (vendored into the tests, not the package) finds no WCAG 2.1
    A/AA violation on the main pages, light and dark. It is evaluated through
    the DevTools protocol: the pages' CSP forbids inline script, and still does."""
    from playwright.sync_api import sync_playwright

    with httpx.Client(base_url=ui_server, headers=bearer(ADMIN_TOKEN), timeout=10) as api:
        assert api.post("/api/v1/models", json={"name": "a11y"}).status_code == 201
        _push(api, "a11y", {"m.onnx": b"a11y 1"}, metrics={"auc": 0.5})
        _push(api, "a11y", {"m.onnx": b"a11y 2"}, lineage={"parent": "a11y/1"})
        r = api.post(
            "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "namespace": "default"}
        )
        assert r.status_code == 201, r.text
        hook = r.json()["id"]
        r = api.post("/api/v1/models/default/a11y/versions/2/approvals", json={"comment": "go"})
        assert r.status_code == 201, r.text
        approval = r.json()["id"]
        r = api.post(
            "/api/v1/deployments/heartbeats",
            json={
                "environment": "prod",
                "reference": "a11y/1",
                "replica": "pod-a",
                "status": "ready",
                "version": 1,
                "measures": MEASURES,
            },
        )
        assert r.status_code == 200, r.text
        r = api.post("/api/v1/deployments/alerts", json={**DRIFT_ALERT, "reference": "a11y/1"})
        assert r.status_code == 200, r.text
    urls = [
        "/",
        "/?q=name+%3D",
        "/models/default/a11y?metric=auc",
        "/models/default/a11y/versions/2",
        "/compare?v=default/a11y/1&v=default/a11y/2",
        "/approvals?namespace=default",
        f"/approvals/{approval}",
        "/audit",
        "/namespaces/default/policy",
        "/models/default/a11y/policy",
        "/webhooks",
        f"/webhooks/{hook}",
        "/account",
        "/roles?namespace=default",
        "/deployments",
        "/deployments/prod/default/a11y/1",
        "/models/default/nope",
    ]
    source = AXE.read_text()
    found: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for scheme in ("light", "dark"):
                page = browser.new_context(color_scheme=scheme).new_page()  # type: ignore[arg-type]
                page.goto(ui_server + "/signin")
                page.fill("#token", ADMIN_TOKEN)
                page.click("button:has-text('Sign in')")
                for url in urls:
                    page.goto(ui_server + url)
                    page.evaluate(source)
                    result = page.evaluate(
                        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                        AXE_TAGS,
                    )
                    for v in result["violations"]:
                        targets = [n["target"] for n in v["nodes"]][:3]
                        found.append(f"{scheme} {url}: {v['id']} ({v['help']}) at {targets}")
                page.context.close()
        finally:
            browser.close()
    assert found == [], "\n".join(found)


def test_webhook_created_tested_and_redelivered_from_the_pages(
    ui_server: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Subscribe a real receiver from the webhooks page (its secret shown once),
    send a test event, watch it arrive, redeliver it: the same message again."""
    from playwright.sync_api import sync_playwright

    from tests.receiver import receiver, wait_for

    shots = tmp_path_factory.getbasetemp() / "screenshots"
    shots.mkdir(exist_ok=True)
    with receiver() as rec, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(java_script_enabled=False).new_page()
            page.goto(ui_server + "/signin")
            page.fill("#token", ADMIN_TOKEN)
            page.click("button:has-text('Sign in')")
            page.goto(ui_server + "/webhooks")
            page.fill("#hook-url", rec.url + "/ci")
            page.fill("#hook-types", "version.*")
            page.click("button:has-text('Create webhook')")
            secret = page.input_value("#secret")
            assert secret.startswith("whsec_")
            page.screenshot(path=str(shots / "17-webhook-secret.png"), full_page=True)
            page.click("text=Go to the webhook")
            assert secret not in page.content()
            page.click("button:has-text('Send a test event')")
            assert "test event queued" in page.inner_text(".notice")
            first = wait_for(rec.snapshot, what="the test event at the receiver")[0]
            assert first.json["type"] == "webhook.test"

            def recorded() -> bool:
                # The page shows the outcome once the dispatcher has recorded it.
                page.reload()
                return "succeeded" in page.inner_text("ol.deliveries")

            wait_for(recorded, what="the delivery's outcome on the page")
            page.click("ol.deliveries summary")
            assert "HTTP 200" in page.inner_text("ol.deliveries")
            page.screenshot(path=str(shots / "18-webhook-deliveries.png"), full_page=True)
            page.click("ol.deliveries button:has-text('Redeliver')")
            assert "queued again" in page.inner_text(".notice")
            again = wait_for(lambda: rec.snapshot()[1:], what="the redelivery")[0]
            assert again.headers["webhook-id"] == first.headers["webhook-id"]
        finally:
            browser.close()
