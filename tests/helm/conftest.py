"""Fixtures of the chart tests: the test tools, and the chart loaded once per module."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.support.chart import CHART, CI, ci_values, need_module, render


@pytest.fixture(scope="module")
def helm() -> ModuleType:
    return need_module("helm_python", "helm-python-sdk")


@pytest.fixture(scope="module")
def kubernetes_validate() -> ModuleType:
    return need_module("kubernetes_validate", "kubernetes-validate")


@pytest.fixture(scope="module")
def chart(helm: ModuleType) -> Iterator[Any]:
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def ci(chart: Any) -> CI:
    """The objects rendered for ci/<name>, rendered once per module."""
    rendered: dict[str, list[dict[str, Any]]] = {}

    def get(name: str) -> list[dict[str, Any]]:
        if name not in rendered:
            rendered[name] = render(chart, ci_values(name))
        return rendered[name]

    return get
