"""Shared fixtures. Tests needing a system package skip without it, except
under AMFEISHU_REQUIRE_E2E=1 (set by .ci/run), where a skip is a failure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "amfeishu" / "samples"
REQUIRE_E2E = os.environ.get("AMFEISHU_REQUIRE_E2E") == "1"


def need_binary(name: str, package: str) -> str:
    """The binary's path, or skip (fail under AMFEISHU_REQUIRE_E2E=1)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: install Debian's {package} (make test does)"
        if REQUIRE_E2E:
            pytest.fail(message + " — AMFEISHU_REQUIRE_E2E=1 forbids skipping")
        pytest.skip(message)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_E2E and report.skipped and call.when in ("setup", "call"):
        report.outcome = "failed"
        report.longrepr = f"skipped under AMFEISHU_REQUIRE_E2E=1: {report.longrepr}"
