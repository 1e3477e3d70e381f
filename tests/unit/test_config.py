from __future__ import annotations

from pathlib import Path

import pytest

from amfeishu.config.load import build_config, embedded_default, load_config, merge_maps
from amfeishu.config.reader import ConfigError, parse_duration
from amfeishu.config.types import Secret
from amfeishu.feishu.webhook import validate_webhook

HOOK = "https://open.feishu.cn/open-apis/bot/v2/hook/0f0e-token-abc"


def problems(data: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_config(data, env=env or {})
    return info.value.problems


def test_minimal_config_gets_defaults() -> None:
    config = build_config({"targets": {"ops": {"webhook": HOOK}}}, env={})
    ops = config.targets["ops"]
    assert ops.webhook == Secret(HOOK)
    assert (ops.rate_limit.per_second, ops.rate_limit.per_minute) == (5.0, 100.0)
    assert config.listen == "0.0.0.0:8064"
    assert config.dedup.ttl == 300.0
    assert config.delivery.max_retry_age == 3600.0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"targets": {"ops": {}}, "tagets": {}}, "tagets: unknown key"),
        (
            {"targets": {"ops": {"webhok": HOOK}}},
            "targets.ops.webhok: unknown key (did you mean 'webhook'?)",
        ),
        (
            {"targets": {"ops": {"rate_limit": {"per_second": -1}}}},
            "targets.ops.rate_limit.per_second: must be > 0, got -1",
        ),
        (
            {"targets": {"ops": {"webhook": "${MISSING}"}}},
            "targets.ops.webhook: environment variable MISSING is not set",
        ),
        (
            {"targets": {"ops": {"webhook": "ftp://x/y"}}},
            "targets.ops.webhook: must be an http(s) URL with a host",
        ),
        (
            {"targets": {"ops": {}}, "dedup": {"ttl": "5 minutes"}},
            "dedup.ttl: must be a duration like 30s, 5m or 1h, got '5 minutes'",
        ),
        (
            {
                "targets": {"ops": {}},
                "routes": [{"matchers": ['severity=~"("'], "targets": ["ops"]}],
            },
            "routes[0].matchers[0]: 'severity=~\"(\"': invalid regular expression",
        ),
        (
            {"targets": {"ops": {}}, "routes": [{"targets": ["nope"]}]},
            "routes[0].targets: unknown target 'nope' (known: ops)",
        ),
        (
            {"targets": {"ops": {"language": "fr"}}},
            "targets.ops.language: must be one of zh, en, auto, got 'fr'",
        ),
        (
            {"targets": {"ops": {"timezone": "Mars/Base"}}},
            "targets.ops.timezone: unknown time zone 'Mars/Base'",
        ),
        (
            {"targets": {"ops": {"mentions": {"critical": ["a@b.c"]}}}},
            "targets.ops.mentions.critical[0]: must be 'all' or an open_id",
        ),
        ({"targets": {}}, "targets: at least one target is required"),
        (
            {"targets": {"ops": {"webhook": HOOK, "webhook_file": "/x"}}},
            "targets.ops: set webhook or webhook_file, not both",
        ),
        ({"targets": {"ops": {}}, "listen": "localhost"}, "listen: must be HOST:PORT"),
        (
            {"targets": {"ops": {}}, "grouping": {"max_alerts_per_card": 2.5}},
            "grouping.max_alerts_per_card: must be a whole number",
        ),
        (
            {"targets": {"ops": {"send_resolved": "yes"}}},
            "targets.ops.send_resolved: must be true or false",
        ),
    ],
)
def test_each_problem_names_its_path(data: object, expected: str) -> None:
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_is_reported_not_only_the_first() -> None:
    found = problems(
        {"bogus": 1, "targets": {"ops": {"rate_limit": {"per_minute": 0}, "msg_type": "fax"}}}
    )
    assert len(found) == 3, found


def test_unset_variable_is_reported_once() -> None:
    assert problems({"targets": {"ops": {"webhook": "${NOPE}"}}}) == [
        "targets.ops.webhook: environment variable NOPE is not set"
        " (use ${NOPE:-default} for a default)"
    ]


def test_env_expansion_with_default() -> None:
    config = build_config(
        {"targets": {"ops": {"webhook": "${HOOK}", "keyword": "${KW:-告警}"}}}, env={"HOOK": HOOK}
    )
    assert config.targets["ops"].webhook == Secret(HOOK)
    assert config.targets["ops"].keyword == "告警"


def test_secret_file_twin(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cr3t\n")
    (tmp_path / "hook").write_text(HOOK)
    config = build_config(
        {"targets": {"ops": {"webhook_file": "hook", "secret_file": str(tmp_path / "secret")}}},
        env={},
        base_dir=tmp_path,
    )
    assert config.targets["ops"].secret == Secret("s3cr3t")
    assert config.targets["ops"].webhook == Secret(HOOK)


def test_secrets_never_print() -> None:
    config = build_config({"targets": {"ops": {"webhook": HOOK, "secret": "topsecret"}}}, env={})
    text = repr(config) + str(config)
    assert "0f0e-token-abc" not in text and "topsecret" not in text
    assert "<secret>" in text


def test_problems_do_not_echo_a_bad_webhook_token() -> None:
    found = problems({"targets": {"ops": {"webhook": "https://open.feishu.cn/hook/tok-SECRET"}}})
    assert found and all("tok-SECRET" not in p for p in found)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://open.feishu.cn/open-apis/bot/v2/hook/abc-123", True),
        ("https://open.larksuite.com/open-apis/bot/v2/hook/abc", True),
        ("https://open.larkoffice.com/open-apis/bot/v2/hook/abc", True),
        ("http://127.0.0.1:8080/open-apis/bot/v2/hook/abc", True),
        ("http://open.feishu.cn/open-apis/bot/v2/hook/abc", False),
        ("https://open.feishu.cn/open-apis/bot/hook/abc", False),
        ("open.feishu.cn/open-apis/bot/v2/hook/abc", False),
        ("https:///nohost", False),
    ],
)
def test_webhook_validation(url: str, ok: bool) -> None:
    assert (validate_webhook(url) is None) is ok


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("0s", 0),
        ("0", 0),
        ("1d", 86400),
        ("5", None),
        ("m5", None),
        ("5m ", 300),
        ("", None),
        ("1h 30m", None),
    ],
)
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_load_config_reports_yaml_position(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("targets:\n  ops: {webhook: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "line" in info.value.problems[0] and "invalid YAML" in info.value.problems[0]


def test_overlay_merges_maps_key_by_key(tmp_path: Path) -> None:
    base = tmp_path / "base.yml"
    base.write_text(f"targets:\n  ops:\n    webhook: {HOOK}\n    language: en\n")
    prod = tmp_path / "prod.yml"
    prod.write_text("targets:\n  ops:\n    language: zh\n  dev: {}\ndedup: {ttl: 1m}\n")
    config = load_config([base, prod], env={})
    assert config.targets["ops"].webhook == Secret(HOOK)
    assert config.targets["ops"].language == "zh"
    assert set(config.targets) == {"ops", "dev"}
    assert config.dedup.ttl == 60
    assert merge_maps({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}


def test_embedded_default_is_a_preview_without_env() -> None:
    config = embedded_default({})
    assert list(config.targets) == ["default"]
    assert config.targets["default"].preview
    live = embedded_default({"FEISHU_WEBHOOK": HOOK, "FEISHU_SECRET": "s"})
    assert live.targets["default"].webhook == Secret(HOOK)
    assert live.targets["default"].secret == Secret("s")


def test_templates_outside_a_set_directory_are_flagged(tmp_path: Path) -> None:
    (tmp_path / "firing-critical.json.j2").write_text("{}")
    found = problems({"templates": {"dir": str(tmp_path)}, "targets": {"ops": {}}})
    assert found == [
        f"templates.dir: firing-critical.json.j2 is ignored: templates go in a set directory,"
        f" like {tmp_path}/default/firing-critical.json.j2"
    ]
