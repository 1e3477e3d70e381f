"""The Grafana dashboard (helm/amfeishu/dashboards/amfeishu.json) and the chart's
PrometheusRule: the ConfigMap the Grafana sidecar loads, PromQL that Prometheus'
own promtool accepts, and only metrics a running amfeishu exposes.

promtool comes with Debian's `prometheus` package: without it the PromQL test
skips, and fails under AMFEISHU_REQUIRE_E2E=1. Grafana's variables
(https://grafana.com/docs/grafana/latest/dashboards/variables/add-template-variables/)
are replaced by values like those Grafana sends before anything is checked.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Metric,
    PlatformCollector,
    ProcessCollector,
)

from amfeishu.metrics import Metrics
from tests.conftest import need_binary
from tests.support.chart import CHART, NAMESPACE, one, render

DASHBOARD_FILE = CHART / "dashboards" / "amfeishu.json"
DASHBOARD: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# What Grafana puts in place of each variable; a multi-value one becomes a regex.
VARIABLES = {
    "namespace": NAMESPACE,
    "job": "amfeishu",
    "target": "(ops|db)",
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "6h",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\s*\)")
# What a running amfeishu's /metrics holds besides amfeishu.metrics.Metrics: the process
# and Python collectors of prometheus_client, and the `up` Prometheus adds to every scrape.
SCRAPE_SERIES = {"up"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}


# ---- PromQL, read just enough to name the metrics -------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_SELECTOR = re.compile(r'([A-Za-z_:][A-Za-z0-9_:]*)\s*\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\}')
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> list[str]:
    """Each metric name the expression selects, in order (promtool has checked the syntax)."""
    text = _STRING.sub('""', expr)
    for pattern in (_MATCHERS, _RANGE, _LABEL_LIST):
        text = pattern.sub(" ", text)
    names = []
    for match in _NAME.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if match.group().lower() in _KEYWORDS or before.isdigit() or before == ".":
            continue  # an operator, or the unit of a number like 5m or 1e3
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        names.append(match.group())
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", ["up"]),
        ('sum by (target, le) (rate(a_bucket{x="y{z}", le!="1"}[5m]))', ["a_bucket"]),
        ("time() - max by (pod) (b_seconds)", ["b_seconds"]),
        ("x > 0 and on (pod) group_left (node) y offset 5m", ["x", "y"]),
        ('label_replace(up, "dst", "$1", "src", "(.*)")', ["up"]),
        ("histogram_quantile(0.99, sum(rate(h_bucket[1m])) by (le)) * 1e3", ["h_bucket"]),
        ("max_over_time(deriv(g[15m])[1h:5m]) > bool 0.5", ["g"]),
        ("sum without (instance) (c_total) / ignoring (x) d", ["c_total", "d"]),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: list[str]) -> None:
    assert metric_names(expr) == names


def interpolate(expr: str) -> str:
    """The expression as Grafana sends it, with VARIABLES' values."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in VARIABLES, f"{expr}: unknown dashboard variable ${name}"
        return VARIABLES[name]

    return _VARIABLE.sub(value, expr)


# ---- what the dashboard and the rules query --------------------------------------------


def panel_queries() -> list[tuple[str, str]]:
    """(where, expr) for every query of every panel."""
    return [
        (f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"])
        for panel in DASHBOARD["panels"]
        for target in panel.get("targets", [])
    ]


def variable_queries() -> list[tuple[str, str]]:
    """(where, selector) of every `label_values(selector, label)` variable."""
    found = []
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = _LABEL_VALUES.fullmatch(variable["query"])
        assert match, f"variable {variable['name']}: not label_values(selector, label)"
        found.append((f"variable {variable['name']}", match.group("selector")))
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """Every PromQL expression of the dashboard, with its variables replaced."""
    return [(w, interpolate(e)) for w, e in panel_queries() + variable_queries()]


@pytest.fixture(scope="module")
def rule_groups(chart: Any) -> list[dict[str, Any]]:
    """The PrometheusRule's groups: every built-in alert, and ci/everything-on's settings."""
    everything = yaml.safe_load((CHART / "ci" / "everything-on-values.yaml").read_text())
    groups = []
    for suffix, values in (
        ("", {"prometheusRule": {"enabled": True}}),
        ("-everything-on", everything),
    ):
        for group in one(render(chart, values), "PrometheusRule")["spec"]["groups"]:
            groups.append({**group, "name": group["name"] + suffix})
    return groups


def rule_queries(groups: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (f"PrometheusRule {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in groups
        for rule in group["rules"]
    ]


# ---- the ConfigMap ---------------------------------------------------------------------


def dashboard_config_maps(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "ConfigMap" and "amfeishu.json" in o["data"]]


def test_dashboard_is_off_by_default(chart: Any) -> None:
    assert dashboard_config_maps(render(chart, {})) == []


def test_dashboard_config_map_holds_the_file_byte_for_byte(chart: Any) -> None:
    objects = render(chart, {"grafana": {"dashboard": {"enabled": True}}})
    (config_map,) = dashboard_config_maps(objects)
    # the Grafana sidecar's default label (kube-prometheus-stack: sidecar.dashboards.label)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert config_map["metadata"]["name"] == "amfeishu-dashboard"
    # never through tpl: Grafana's own {{target}} legends reach Grafana as written
    assert config_map["data"] == {"amfeishu.json": DASHBOARD_FILE.read_text(encoding="utf-8")}
    assert "{{target}}" in config_map["data"]["amfeishu.json"]


def test_dashboard_config_map_follows_the_values(chart: Any) -> None:
    settings = {
        "enabled": True,
        "label": "grafana_dashboard_amfeishu",
        "labelValue": "true",
        "namespace": "grafana",
        "annotations": {"grafana_folder": "Alerting"},
        "labels": {"team": "platform"},
    }
    (config_map,) = dashboard_config_maps(render(chart, {"grafana": {"dashboard": settings}}))
    metadata = config_map["metadata"]
    assert metadata["namespace"] == "grafana"
    assert metadata["annotations"] == {"grafana_folder": "Alerting"}
    assert metadata["labels"]["grafana_dashboard_amfeishu"] == "true"
    assert metadata["labels"]["team"] == "platform"
    assert "grafana_dashboard" not in metadata["labels"]


# ---- the dashboard itself --------------------------------------------------------------


def test_dashboard_is_well_formed() -> None:
    assert DASHBOARD["uid"] == "amfeishu" and "__inputs" not in DASHBOARD  # sidecar-loadable
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "job"} <= set(variables)
    panels = DASHBOARD["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[x, y]!r}"
                cells[x, y] = panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]


SHOWN = {
    "alerts received": r"rate\(amfeishu_alerts_received_total\{",
    "notifications by outcome and target": (
        r"by \(target, outcome\) \(rate\(amfeishu_notifications_total\{"
    ),
    "delivery latency p50": (
        r"histogram_quantile\(0\.5, .*rate\(amfeishu_delivery_latency_seconds_bucket\{"
    ),
    "delivery latency p99": (
        r"histogram_quantile\(0\.99, .*rate\(amfeishu_delivery_latency_seconds_bucket\{"
    ),
    "outbox depth": r"amfeishu_outbox_depth\{",
    "dead letters": r"amfeishu_dead_letters\{",
    "rate-limit waits": r"rate\(amfeishu_rate_limit_waits_total\{",
    "template errors": r"amfeishu_template_errors_total\{",
    "reload status": r"amfeishu_config_last_reload_successful\{",
    "process memory": r"process_resident_memory_bytes\{",
    "process CPU": r"rate\(process_cpu_seconds_total\{",
}


@pytest.mark.parametrize(("what", "pattern"), SHOWN.items())
def test_dashboard_shows(what: str, pattern: str) -> None:
    exprs = [e for _, e in panel_queries()]
    assert any(re.search(pattern, e) for e in exprs), f"no panel shows {what} ({pattern})"


@pytest.mark.parametrize(("where", "expr"), panel_queries())
def test_every_selector_follows_the_namespace_and_job_variables(where: str, expr: str) -> None:
    selectors = _SELECTOR.findall(expr)
    assert [name for name, _ in selectors] == metric_names(expr), f"{where}: a bare selector"
    for name, matchers in selectors:
        for matcher in ('namespace=~"$namespace"', 'job=~"$job"'):
            assert matcher in matchers, f"{where}: {name} lacks {matcher}"


# ---- valid PromQL over metrics amfeishu exposes -----------------------------------------


def promtool_check(rules: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    return subprocess.run(
        [need_binary("promtool", "prometheus"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_promql_of_the_dashboard_and_the_rules_is_valid(
    rule_groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    records = {}
    for where, expr in dashboard_queries():
        name = "dashboard:" + re.sub(r"\W+", "_", where).strip("_").lower()
        assert name not in records, f"two queries named {name}"
        records[name] = {"record": name, "expr": expr}
    groups = [*rule_groups, {"name": "dashboard", "rules": list(records.values())}]
    result = promtool_check({"groups": groups}, tmp_path)
    count = sum(len(g["rules"]) for g in groups)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_refuses_broken_promql(tmp_path: Path) -> None:
    """The check above can fail: promtool names the rule whose PromQL does not parse."""
    broken = {"record": "dashboard:broken", "expr": "sum(rate(amfeishu_alerts_received_total[5m])"}
    result = promtool_check({"groups": [{"name": "g", "rules": [broken]}]}, tmp_path)
    assert result.returncode != 0
    assert "dashboard:broken" in result.stdout + result.stderr


def series_names(family: Metric) -> set[str]:
    """The series a metric family is exposed as (the text format's suffix rules)."""
    names = {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names | {sample.name for sample in family.samples}


@pytest.fixture(scope="module")
def exposed() -> set[str]:
    """Every series name a running amfeishu's /metrics holds, and `up`."""
    standard = CollectorRegistry()
    ProcessCollector(registry=standard)  # process_* on Linux, from /proc
    PlatformCollector(registry=standard)
    GCCollector(registry=standard)
    names = set(SCRAPE_SERIES)
    for registry in (Metrics().registry, standard):
        for family in registry.collect():
            names |= series_names(family)
    assert "process_resident_memory_bytes" in names  # Linux: the collector read /proc
    return names


def test_every_metric_queried_is_one_amfeishu_exposes(
    rule_groups: list[dict[str, Any]], exposed: set[str]
) -> None:
    unknown = [
        f"{where}: {name}"
        for where, expr in dashboard_queries() + rule_queries(rule_groups)
        for name in metric_names(expr)
        if name not in exposed
    ]
    assert unknown == [], "metrics amfeishu does not expose:\n" + "\n".join(unknown)
    queried = {
        n for _, e in dashboard_queries() + rule_queries(rule_groups) for n in metric_names(e)
    }
    assert len(queried) >= 10  # the reading above found the metrics at all


@pytest.mark.parametrize(
    "name",
    ["amfeishu_alerts_received", "amfeishu_delivery_latency_seconds", "process_cpu_seconds"],
)
def test_a_family_name_without_its_suffix_is_not_a_series(exposed: set[str], name: str) -> None:
    assert name not in exposed
