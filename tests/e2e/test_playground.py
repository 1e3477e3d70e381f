"""The /ui playground in a real Chromium against a real `amfeishu serve --web.enable-ui`.

Needs Debian's chromium and the playwright Python package (never `playwright
install`: the browser is the system one). Saves test-artifacts/playground.png.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_E2E, ROOT, SAMPLES, need_binary
from tests.support.feishu_fake import FakeFeishu
from tests.support.processes import Amfeishu

pytestmark = pytest.mark.e2e
ARTIFACTS = ROOT / "test-artifacts"
USER, PASSWORD = "am", "pw-playground"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = (
            "playwright not installed: `.venv/bin/pip install playwright` "
            "(the Python package only; the browser is Debian's chromium)"
        )
        if REQUIRE_E2E:
            pytest.fail(message + " — AMFEISHU_REQUIRE_E2E=1 forbids skipping")
        pytest.skip(message)
    return sync_playwright


@pytest.fixture
def browser() -> Iterator[Any]:
    need_binary("chromium", "chromium")
    sync_playwright = _playwright()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def test_playground_edits_a_template_and_reports_errors_in_place(
    browser: Any,
    feishu: FakeFeishu,
    write_config: Callable[..., Path],
    serve: Callable[..., Amfeishu],
) -> None:
    from playwright.sync_api import expect

    config = write_config(
        {
            "auth": {"basic_auth": {"username": USER, "password": PASSWORD}},
            "targets": {
                "ops": {},  # a preview target: its cards are listed under recent cards
                "team-en": {"webhook": feishu.add_bot("en"), "language": "en"},
            },
        }
    )
    server = serve(config, args=["--web.enable-ui"])
    context = browser.new_context(
        http_credentials={"username": USER, "password": PASSWORD},
        viewport={"width": 1280, "height": 1000},
        locale="zh-CN",
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(f"{server.url}/ui")

    card = page.locator("#preview .fs-card")
    header = card.locator(".fs-header")
    title = card.locator(".fs-title")
    # the firing sample, rendered with the file its severity picks
    expect(header).to_have_class("fs-header fs-header-red")
    expect(title).to_contain_text("[告警:1] HighCPU")
    expect(page.locator("#file")).to_have_value("firing-critical.json.j2")
    expect(page.locator("#source")).to_have_value(
        (ROOT / "templates/default/firing-critical.json.j2").read_text()
    )
    expect(page.locator("#size")).to_contain_text("of 20 KB")
    expect(card.locator("a.fs-btn").first).to_have_attribute(
        "href", "http://prometheus.example/graph?g0.expr=up%3D%3D0"
    )

    # another sample picks another file
    page.select_option("#sample", "resolved")
    expect(header).to_have_class("fs-header fs-header-green")
    expect(page.locator("#file")).to_have_value("resolved.json.j2")

    # Chinese content, and the English target
    page.select_option("#sample", "cjk-hostile-firing")
    expect(title).to_contain_text("[告警:1] 磁盘空间不足")
    expect(page.locator("#preview")).to_contain_text("磁盘 /data 剩余 3%")
    page.select_option("#target", "team-en")
    expect(title).to_contain_text("[FIRING:1] 磁盘空间不足")
    page.select_option("#target", "ops")
    expect(title).to_contain_text("[告警:1] 磁盘空间不足")

    # edit the template: the preview follows, nothing is saved
    source = page.locator("#source").input_value()
    edited = source.replace(
        "{% import", '{% set title = "值班提醒 · " ~ title %}\n{% import', 1
    ).replace('m.card("red", "red")', 'm.card("carmine", "red")')
    assert edited != source
    page.fill("#source", edited)
    expect(title).to_contain_text("值班提醒 · [告警:1] 磁盘空间不足")
    expect(header).to_have_class("fs-header fs-header-carmine")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#json")).to_contain_text('"template": "carmine"')
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)

    # break it: the error is reported in place, with its line, and the safe card is shown
    broken = edited + "{% if %}\n"
    line = len(broken.splitlines())
    page.fill("#source", broken)
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text(f"Template error at line {line}")
    expect(error).to_contain_text(f"default/firing-critical.json.j2:{line}:")
    expect(header).to_have_class("fs-header fs-header-red")  # the built-in safe card
    expect(page.locator("#used")).to_contain_text("builtin:safe")
    page.get_by_role("button", name=f"Go to line {line}").click()
    selected = page.evaluate(
        "() => { const a = document.getElementById('source');"
        " return a.value.slice(a.selectionStart, a.selectionEnd); }"
    )
    assert selected == "{% if %}"
    page.screenshot(path=str(ARTIFACTS / "playground-error.png"), full_page=True)

    # fixed again
    page.fill("#source", edited)
    expect(error).to_be_hidden()
    expect(header).to_have_class("fs-header fs-header-carmine")

    # the saved templates were not touched: a real notification uses them
    auth = (USER, PASSWORD)
    payload = json.loads((SAMPLES / "cjk-hostile-firing.json").read_text())
    assert server.post("/alerts/ops", payload, auth=auth).status_code == 200
    page.click("#refresh")
    recent = page.locator("#recent .fs-card")
    expect(recent).to_have_count(1)
    expect(recent.locator(".fs-header")).to_have_class("fs-header fs-header-red")
    expect(recent.locator(".fs-title")).to_have_text("[告警:1] 磁盘空间不足严重")
    assert problems == [], problems
    context.close()


def test_playground_needs_credentials(
    browser: Any, write_config: Callable[..., Path], serve: Callable[..., Amfeishu]
) -> None:
    config = write_config(
        {"auth": {"basic_auth": {"username": USER, "password": PASSWORD}}, "targets": {"ops": {}}}
    )
    server = serve(config, args=["--web.enable-ui"])
    context = browser.new_context(http_credentials={"username": USER, "password": "wrong"})
    response = context.request.get(f"{server.url}/ui", fail_on_status_code=False)
    assert response.status == 401
    assert response.headers["www-authenticate"] == 'Basic realm="amfeishu"'
    page = context.new_page()
    shown = page.goto(f"{server.url}/ui")
    assert shown is not None and shown.status == 401
    assert "missing or wrong credentials" in page.content()
    context.close()
