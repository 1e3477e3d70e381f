"""What /metrics exposes: the standard process and Python collectors, build info, no _created."""

from __future__ import annotations

import platform

import pytest
from prometheus_client import generate_latest

from amfeishu import __version__
from amfeishu.metrics import Metrics, build_labels


def exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def sample_names(text: str) -> set[str]:
    return {
        line.split("{", 1)[0].split(" ", 1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.mark.parametrize(
    "name",
    [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "python_gc_objects_collected_total",
        "python_info",
        "amfeishu_build_info",
        "amfeishu_config_last_reload_successful",
    ],
)
def test_standard_and_own_metrics_are_exposed(name: str) -> None:
    assert name in sample_names(exposition(Metrics()))


def test_no_created_series() -> None:
    metrics = Metrics()
    metrics.notifications.labels("ops", "delivered").inc()
    metrics.latency.labels("ops").observe(0.2)
    text = exposition(metrics)
    assert "amfeishu_notifications_total" in sample_names(text)
    assert [line for line in text.splitlines() if "_created" in line] == []


def test_build_info_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMFEISHU_REVISION", "b7086e2")
    line = (
        f'amfeishu_build_info{{python_version="{platform.python_version()}",'
        f'revision="b7086e2",version="{__version__}"}} 1.0'
    )
    assert line in exposition(Metrics()).splitlines()


@pytest.mark.parametrize(
    ("env", "revision"),
    [({}, "unknown"), ({"AMFEISHU_REVISION": ""}, "unknown"), ({"AMFEISHU_REVISION": "v1"}, "v1")],
)
def test_build_labels(env: dict[str, str], revision: str) -> None:
    assert build_labels(env) == {
        "version": __version__,
        "revision": revision,
        "python_version": platform.python_version(),
    }


def test_registries_are_independent() -> None:
    first, second = Metrics(), Metrics()
    first.cards.labels("ops").inc()
    assert "amfeishu_cards_sent_total" in sample_names(exposition(first))
    assert "amfeishu_cards_sent_total" not in sample_names(exposition(second))
