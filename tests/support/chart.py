"""The Helm chart (helm/amfeishu), rendered offline for the tests in tests/helm/.

helm-python-sdk (Helm 4 compiled in) renders without a cluster or a helm
binary; it is a test tool (make test installs it): without it the tests skip,
and fail under AMFEISHU_REQUIRE_E2E=1.
"""

from __future__ import annotations

import base64
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "amfeishu"
CI_DIR = CHART / "ci"
RELEASE = "amfeishu"
NAMESPACE = "monitoring"
REQUIRE_E2E = os.environ.get("AMFEISHU_REQUIRE_E2E") == "1"
# The objects rendered for ci/<name> (the `ci` fixture of tests/helm/conftest.py).
CI = Callable[[str], list[dict[str, Any]]]


def need_module(module: str, package: str) -> ModuleType:
    """The module, or skip (fail under AMFEISHU_REQUIRE_E2E=1)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{package} is not installed ({exc}): pip install {package} (make test does)"
        if REQUIRE_E2E:
            pytest.fail(message + " — AMFEISHU_REQUIRE_E2E=1 forbids skipping")
        pytest.skip(message)


def render(chart: Any, values: dict[str, Any], release: str = RELEASE) -> list[dict[str, Any]]:
    """Every object the chart renders for `values`, NOTES.txt left out."""
    manifests = chart.render(values, name=release, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def kinds(objects: list[dict[str, Any]]) -> set[str]:
    return {o["kind"] for o in objects}


def is_test_hook(obj: dict[str, Any]) -> bool:
    """A `helm test` hook: stored with the release, created only by `helm test`."""
    hooks = (obj["metadata"].get("annotations") or {}).get("helm.sh/hook", "")
    return "test" in hooks.split(",")


def installed(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What `helm install` creates: the objects that are not test hooks."""
    return [o for o in objects if not is_test_hook(o)]


def ci_values(name: str) -> dict[str, Any]:
    """The values of helm/amfeishu/ci/<name>."""
    return yaml.safe_load((CI_DIR / name).read_text(encoding="utf-8")) or {}


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The amfeishu container of the Deployment."""
    return next(c for c in pod_spec(objects)["containers"] if c["name"] == "amfeishu")


def secret_data(objects: list[dict[str, Any]]) -> dict[str, bytes]:
    """The chart's Secret, key → decoded value."""
    data = one(objects, "Secret")["data"]
    return {key: base64.b64decode(value) for key, value in data.items()}


def secret_config(objects: list[dict[str, Any]]) -> bytes:
    """config.yml as the chart's Secret holds it."""
    return secret_data(objects)["config.yml"]
