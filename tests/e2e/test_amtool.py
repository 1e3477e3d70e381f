"""Route matchers mean in amfeishu what they mean in Alertmanager: Debian's amtool judges.

Each string goes into an amfeishu config (`routes[].matchers`) and into an
Alertmanager config (`route.routes[].matchers`); `amtool check-config` must
accept exactly the strings amfeishu accepts, and `amtool config routes` must
print, for each accepted one, the matchers amfeishu read from it.

Debian's Alertmanager (bookworm: 0.25) predates the UTF-8 matchers of 0.27, so
agreement is tested on the classic syntax, which every Alertmanager reads (0.27+
reads it in its default fallback mode); the UTF-8-only strings are checked to
be refused by an amtool older than 0.27 and accepted by a newer one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from amfeishu.config.load import build_config
from amfeishu.config.reader import ConfigError
from amfeishu.matchers import OPERATORS, Matcher
from tests.conftest import need_binary
from tests.e2e.conftest import EXAMPLES
from tests.support.processes import ROOT

HOOK = "https://open.feishu.cn/open-apis/bot/v2/hook/amtool-check"

# The classic syntax: the examples of Alertmanager's configuration docs and the
# corners of its classic parser. Whether each is valid is for amtool to say.
CLASSIC = [
    'severity="critical"',
    'team=~"db|infra"',
    "severity=critical",
    'severity!="critical"',
    'team!~"db.*"',
    'team=""',
    "team=",  # an empty value: the classic parser's, read in fallback mode
    '  job = "node" ',
    'msg="say \\"hi\\""',
    "alertname = Watchdog",
    'severity =~ "warning|critical"',
    "foo = bar",
    "dings != bums",
    'foo = "bar,baz"',
    '{foo="bar", dings!="bums"}',
    '{alertname="Watchdog", severity=~"warning|critical"}',
    '{alertname="Watchdog", severity=~"warning|critical",}',
    'alertname="Watchdog", severity=~"warning|critical"',
    '{\n   alertname = "Watchdog",\n   severity =~ "warning|critical",\n}',
    '{alertname="Watchdog", severity=~"warning|critical"',  # no close brace
    'alertname="Watchdog", severity=~"warning|critical"}',  # no open brace
    "",
    "{}",
    'summary="磁盘空间不足"',
    "mood=🙂",
    "a:b=c",
    "foo=bar baz",
    'qux="\\xf0\\x9f\\x99\\x82"',  # read literally: the classic reading wins a disagreement
    'tab="a\\tb"',
    "x=foo!",
    "x='quoted'",
    "path=~/var/.*",
    # refused
    '{{alertname="Watchdog", severity=~"warning|critical",}}',
    '="x"',
    "severity~critical",
    'a="unterminated',
    'a="x" b',
    "a=b,c",
    "a=b,,c=d",
    'a=~"("',
    "a!b",
    '{a="b"}}',
]
# UTF-8 matchers (Alertmanager 0.27+): quoted, dotted, non-ASCII label names, and
# whitespace around braces (the docs' YAML block example keeps its final newline).
UTF8_ONLY = [
    '{quote=~"She said: \\"Hi, all!( How\'re you…)?\\""}\n',
    "9lives=yes",
    '"service.name"="api"',
    "service.name=api",
    '{"foo bar"="x", "k8s.io/app"=~"web|api"}',
    "Προμηθεύς=Προμηθεύς",
    '"quote\\"d"!="x"',
]


def example_matchers() -> list[list[str]]:
    """The matcher lists of the routes in examples/amfeishu.yml and examples/alertmanager.yml."""
    ours = yaml.safe_load((EXAMPLES / "amfeishu.yml").read_text())["routes"]
    theirs = yaml.safe_load((EXAMPLES / "alertmanager.yml").read_text())["route"]["routes"]
    return [r.get("matchers", []) for r in ours + theirs]


def amfeishu_reads(matchers: list[str]) -> tuple[Matcher, ...] | None:
    """The route's matchers as amfeishu's config loader reads them, None if it refuses."""
    data = {
        "targets": {"ops": {"webhook": HOOK}},
        "routes": [{"matchers": matchers, "targets": ["ops"]}],
    }
    try:
        return build_config(data, env={}).routes[0].matchers
    except ConfigError as exc:
        assert all(p.startswith("routes[0].matchers[") for p in exc.problems), exc.problems
        return None


def alertmanager_config(routes: list[list[str]]) -> dict[str, Any]:
    """Child route i, with these matchers, sends to receiver r<i>."""
    children = [{"receiver": f"r{i}", "matchers": m} for i, m in enumerate(routes)]
    names = ["default"] + [f"r{i}" for i in range(len(routes))]
    return {
        "route": {"receiver": "default", "routes": children},
        "receivers": [{"name": n} for n in names],
    }


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def amtool_accepts(amtool: str, tmp_path: Path, strings: list[str]) -> list[bool]:
    """One config file per string, all checked by one `amtool check-config`."""
    files = [
        write(tmp_path / f"am-{i}.yml", alertmanager_config([[s]])) for i, s in enumerate(strings)
    ]
    run = subprocess.run(
        [amtool, "check-config", *map(str, files)], capture_output=True, text=True, timeout=60
    )
    verdicts = dict(re.findall(r"Checking '([^']+)'\s+(SUCCESS|FAILED)", run.stdout))
    assert len(verdicts) == len(files), run.stdout + run.stderr
    return [verdicts[str(f)] == "SUCCESS" for f in files]


def amtool_routes(amtool: str, tmp_path: Path, routes: list[list[str]]) -> list[str]:
    """What `amtool config routes` prints as each child route's matchers."""
    config = write(tmp_path / "am-routes.yml", alertmanager_config(routes))
    run = subprocess.run(
        [amtool, "config", "routes", f"--config.file={config}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    printed = dict(
        (receiver, shown)
        for shown, receiver in re.findall(r"[├└]── (.*)  receiver: (r\d+)$", run.stdout, re.M)
    )
    assert len(printed) == len(routes), run.stdout
    return [printed[f"r{i}"] for i in range(len(routes))]


def as_alertmanager_prints(matchers: tuple[Matcher, ...]) -> str:
    """A route's matchers in `amtool config routes` form: sorted by name, value, operator."""
    if not matchers:
        return "default-route"
    order = {"=": 0, "!=": 1, "=~": 2, "!~": 3}
    assert set(order) == set(OPERATORS)
    ordered = sorted(matchers, key=lambda m: (m.name, m.value, order[m.op]))
    return "{" + ",".join(map(str, ordered)) + "}"


def amtool_version(amtool: str) -> tuple[int, int]:
    run = subprocess.run([amtool, "--version"], capture_output=True, text=True, timeout=60)
    found = re.search(r"version (\d+)\.(\d+)", run.stdout + run.stderr)
    assert found, run.stdout + run.stderr
    return int(found.group(1)), int(found.group(2))


def test_amtool_accepts_exactly_the_classic_matchers_amfeishu_accepts(tmp_path: Path) -> None:
    amtool = need_binary("amtool", "prometheus-alertmanager")
    ours = [amfeishu_reads([s]) is not None for s in CLASSIC]
    theirs = amtool_accepts(amtool, tmp_path, CLASSIC)
    disagree = [(s, a, b) for s, a, b in zip(CLASSIC, ours, theirs, strict=True) if a != b]
    assert disagree == [], "(string, amfeishu accepts, amtool accepts)"
    assert 20 < sum(ours) < len(CLASSIC)  # the table holds both kinds


def test_amtool_reads_each_accepted_string_as_amfeishu_does(tmp_path: Path) -> None:
    amtool = need_binary("amtool", "prometheus-alertmanager")
    routes = [[s] for s in CLASSIC if amfeishu_reads([s]) is not None] + example_matchers()
    ours = []
    for matchers in routes:
        read = amfeishu_reads(matchers)
        assert read is not None, matchers
        ours.append(as_alertmanager_prints(read))
    assert amtool_routes(amtool, tmp_path, routes) == ours


def test_the_examples_route_matchers_pass_both_checkers(tmp_path: Path) -> None:
    amtool = need_binary("amtool", "prometheus-alertmanager")
    routes = example_matchers()
    assert any(len(m) > 1 for m in routes)  # a route with several matchers, all must match
    am = write(tmp_path / "alertmanager.yml", alertmanager_config(routes))
    check = subprocess.run(
        [amtool, "check-config", str(am)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    ours = {
        "storage": {"path": str(tmp_path / "outbox.db")},
        "targets": {"ops": {"webhook": HOOK}},
        "routes": [{"matchers": m, "targets": ["ops"]} for m in routes],
    }
    run = subprocess.run(
        [sys.executable, "-m", "amfeishu", "check-config", str(write(tmp_path / "a.yml", ours))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("text", UTF8_ONLY)
def test_utf8_matchers_need_alertmanager_0_27(text: str, tmp_path: Path) -> None:
    amtool = need_binary("amtool", "prometheus-alertmanager")
    assert amfeishu_reads([text]) is not None
    [accepted] = amtool_accepts(amtool, tmp_path, [text])
    # Debian bookworm ships 0.25: it refuses them, as every Alertmanager before 0.27 does
    assert accepted is (amtool_version(amtool) >= (0, 27))
