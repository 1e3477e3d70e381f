"""The Feishu app part of the config (apps, alertmanager, app targets): exact error texts,
as `check-config` prints them, and the defaults."""

from __future__ import annotations

from typing import Any

import pytest

from amfeishu.config.load import build_config
from amfeishu.config.reader import ConfigError
from amfeishu.config.types import Config, Secret

APP = {"app_id": "cli_a1b2c3", "app_secret": "app-secret-0001", "verification_token": "vt-01"}
AM = {"url": "http://alertmanager:9093"}


def config(targets: dict[str, Any], apps: Any = None, **top: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"storage": {"path": ":memory:"}, "targets": targets, **top}
    data["apps"] = {"oncall": APP} if apps is None else apps
    return data


def chat(**keys: Any) -> dict[str, Any]:
    return {"app": "oncall", "chat_id": "oc_0123abcd", **keys}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_config(data, env={})
    return caught.value.problems


def loads(data: dict[str, Any]) -> Config:
    return build_config(data, env={})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            config({"t": {"app": "other", "chat_id": "oc_1"}}),
            ["targets.t.app: unknown app 'other' (known: oncall)"],
            id="unknown app",
        ),
        pytest.param(
            config({"t": {"app": "other", "chat_id": "oc_1"}}, apps={}),
            ["targets.t.app: unknown app 'other' (known: none; define it under apps)"],
            id="unknown app, none defined",
        ),
        pytest.param(
            config({"t": chat(webhook="https://open.feishu.cn/open-apis/bot/v2/hook/abc")}),
            ["targets.t: set webhook or app, not both: a target has one receiver"],
            id="webhook and app",
        ),
        pytest.param(
            config({"t": {"app": "oncall"}}),
            [
                "targets.t: an app target needs exactly one of"
                " chat_id, open_id, user_id, union_id, email"
            ],
            id="no receiver id",
        ),
        pytest.param(
            config({"t": chat(email="ops@example.com")}),
            [
                "targets.t: an app target needs exactly one of"
                " chat_id, open_id, user_id, union_id, email, got chat_id and email"
            ],
            id="two receiver ids",
        ),
        pytest.param(
            config({"t": {"app": "oncall", "chat_id": "ou_123"}}),
            ["targets.t.chat_id: must look like oc_…, got 'ou_123'"],
            id="chat_id not oc_",
        ),
        pytest.param(
            config({"t": {"app": "oncall", "open_id": "oc_123"}}),
            ["targets.t.open_id: must look like ou_…, got 'oc_123'"],
            id="open_id not ou_",
        ),
        pytest.param(
            config({"t": {"app": "oncall", "union_id": "ou_123"}}),
            ["targets.t.union_id: must look like on_…, got 'ou_123'"],
            id="union_id not on_",
        ),
        pytest.param(
            config({"t": {"app": "oncall", "user_id": "a b"}}),
            ["targets.t.user_id: must look like letters, digits, '_' or '-', got 'a b'"],
            id="user_id with a space",
        ),
        pytest.param(
            config({"t": {"app": "oncall", "email": "ops.example.com"}}),
            ["targets.t.email: must look like name@example.com, got 'ops.example.com'"],
            id="email without @",
        ),
        pytest.param(
            config({"t": {"app": "oncall", "chat_id": "oc_1\n"}}),
            ["targets.t.chat_id: must look like oc_…, got 'oc_1\\n'"],
            id="chat_id with a newline",
        ),
        pytest.param(
            config({"t": chat(actions=["ack", "page"])}),
            ["targets.t.actions[1]: must be one of ack, silence, got 'page'"],
            id="unknown action",
        ),
        pytest.param(
            config({"t": chat(actions=["ack", "silence"])}),
            ["targets.t.actions: silence needs alertmanager.url (where silences go)"],
            id="silence without alertmanager",
        ),
        pytest.param(
            config({"t": chat(silence_durations=["1h", "soon", "0s"])}, alertmanager=AM),
            [
                "targets.t.silence_durations[1]: must be a duration like 1h, got 'soon'",
                "targets.t.silence_durations[2]: must be a duration like 1h, got '0s'",
            ],
            id="bad silence durations",
        ),
        pytest.param(
            config({"t": chat(silence_durations=[])}, alertmanager=AM),
            ["targets.t.silence_durations: needs at least one duration for silence"],
            id="no silence duration",
        ),
        pytest.param(
            config({"t": chat()}, apps={"oncall": {"verification_token": "vt"}}),
            [
                "apps.oncall.app_id: is required (cli_… from the developer console)",
                "apps.oncall.app_secret: is required (or app_secret_file)",
            ],
            id="missing app_id and app_secret",
        ),
        pytest.param(
            config({"t": chat()}, apps={"oncall": {**APP, "app_secret": None}}),
            ["apps.oncall.app_secret: is required (or app_secret_file)"],
            id="app_secret null",
        ),
        pytest.param(
            config({"t": chat()}, apps={"oncall": {**APP, "app_secret": " "}}),
            ["apps.oncall.app_secret: is empty"],
            id="app_secret blank",
        ),
        pytest.param(
            config({"t": chat()}, apps={"oncall": {**APP, "app_id": "a1b2"}}),
            ["apps.oncall.app_id: must look like cli_a1b2c3d4e5f6, got 'a1b2'"],
            id="app_id not cli_",
        ),
        pytest.param(
            config({"t": chat()}, apps={"oncall": {**APP, "domain": "open.feishu.cn"}}),
            ["apps.oncall.domain: must be 'feishu', 'lark' or an http(s)://host URL"],
            id="domain without scheme",
        ),
        pytest.param(
            config({"t": chat()}, apps={"oncall": {**APP, "domain": "ftp://open.feishu.cn"}}),
            ["apps.oncall.domain: must be 'feishu', 'lark' or an http(s)://host URL"],
            id="domain ftp",
        ),
        pytest.param(
            config({"t": chat()}, apps={"oncall": {**APP, "domain": "https://h.example/api"}}),
            ["apps.oncall.domain: must be the host alone, like https://open.feishu.cn"],
            id="domain with a path",
        ),
        pytest.param(
            config({"t": chat()}, apps={"oncall": {**APP, "domain": "https://u:pw@h.example"}}),
            ["apps.oncall.domain: must not carry a user or password"],
            id="domain with credentials",
        ),
        pytest.param(
            config({"t": chat()}, apps={"oncall": {**APP, "verification_token": None}}),
            [
                "apps.oncall.verification_token: is required: target t has buttons that"
                " call back (ack); every click's token is checked against it"
            ],
            id="verification_token missing with actions",
        ),
        pytest.param(
            config({"t": {"chat_id": "oc_1", "update_in_place": False, "actions": ["ack"]}}),
            [
                "targets.t.chat_id: only app targets take this key (set app: too)",
                "targets.t.update_in_place: only app targets take this key (set app: too)",
                "targets.t.actions: only app targets take this key (set app: too)",
            ],
            id="app-only keys on a webhook target",
        ),
        pytest.param(
            config({"t": {"mentions": {"critical": ["ops@example.com"]}}}),
            [
                "targets.t.mentions.critical[0]: must be 'all' or an open_id like ou_xxx,"
                " got 'ops@example.com' (custom bots cannot @ by email)"
            ],
            id="email mention on a webhook target",
        ),
        pytest.param(
            config({"t": chat(mentions={"critical": ["nobody"]})}),
            [
                "targets.t.mentions.critical[0]: must be 'all' or an open_id like ou_xxx,"
                " got 'nobody' or an email"
            ],
            id="bad mention on an app target",
        ),
        pytest.param(
            config({"t": chat(msg_type="text")}),
            ["targets.t.msg_type: app targets send cards: leave it interactive"],
            id="msg_type text",
        ),
        pytest.param(
            config({"t": chat()}, apps={"oncall": {**APP, "app_idd": "x"}}),
            ["apps.oncall.app_idd: unknown key (did you mean 'app_id'?)"],
            id="typo in an app key",
        ),
        pytest.param(
            config({"t": {}}, alertmanager={"url": "alertmanager:9093"}),
            ["alertmanager.url: must be an http(s) URL with a host, got 'alertmanager:9093'"],
            id="alertmanager url without scheme",
        ),
        pytest.param(
            config(
                {"t": {}},
                alertmanager={**AM, "bearer_token": "x", "basic_auth": {"username": "u"}},
            ),
            [
                "alertmanager.basic_auth: needs both username and password (or password_file)",
                "alertmanager: set bearer_token or basic_auth, not both",
            ],
            id="alertmanager auth both and half",
        ),
    ],
)
def test_app_config_problems_name_the_key_and_the_fix(
    data: dict[str, Any], expected: list[str]
) -> None:
    assert problems(data) == expected


def test_every_problem_is_reported_at_once() -> None:
    data = config(
        {"a": {"app": "nope", "chat_id": "oc_1"}, "b": {"app": "oncall", "email": "x"}},
        apps={"oncall": {**APP, "domain": "gopher://x"}},
    )
    found = problems(data)
    assert len(found) == 3, found
    assert any(p.startswith("targets.a.app: unknown app 'nope'") for p in found)
    assert any(p.startswith("targets.b.email:") for p in found)
    assert any(p.startswith("apps.oncall.domain:") for p in found)


def test_secrets_never_appear_in_problems() -> None:
    secret = "app-secret-that-must-not-leak"
    data = config(
        {"t": chat(actions=["page"])},
        apps={
            "oncall": {**APP, "app_secret": secret, "domain": "nope", "verification_token": None}
        },
    )
    found = problems(data)
    assert found and all(secret not in p for p in found)


def test_defaults_with_alertmanager() -> None:
    loaded = loads(config({"t": chat()}, alertmanager=AM))
    delivery = loaded.targets["t"].app
    assert delivery is not None
    assert delivery.actions == ("ack", "silence")
    assert delivery.silence_durations == ("1h", "4h", "24h")
    assert delivery.update_in_place is True
    assert (delivery.app, delivery.receive_id_type, delivery.receive_id) == (
        "oncall",
        "chat_id",
        "oc_0123abcd",
    )
    assert loaded.targets["t"].preview is False
    assert loaded.alertmanager is not None
    assert loaded.alertmanager.url == "http://alertmanager:9093"


def test_defaults_without_alertmanager_offer_ack_only() -> None:
    delivery = loads(config({"t": chat()})).targets["t"].app
    assert delivery is not None
    assert delivery.actions == ("ack",)


@pytest.mark.parametrize(
    ("domain", "base"),
    [
        (None, "https://open.feishu.cn"),
        ("feishu", "https://open.feishu.cn"),
        ("lark", "https://open.larksuite.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://feishu.internal.example/", "https://feishu.internal.example"),
        ("https://feishu.internal.example/open-apis", "https://feishu.internal.example"),
    ],
)
def test_domain_gives_the_base_url(domain: str | None, base: str) -> None:
    app = {**APP, **({"domain": domain} if domain is not None else {})}
    loaded = loads(config({"t": chat()}, apps={"oncall": app}))
    assert loaded.apps["oncall"].base_url == base


@pytest.mark.parametrize(
    ("receiver", "value"),
    [
        ("chat_id", "oc_a1-b2_c3"),
        ("open_id", "ou_a1b2"),
        ("user_id", "e12ab-3"),
        ("union_id", "on_a1b2"),
        ("email", "oncall@example.com"),
    ],
)
def test_each_receiver_id_type(receiver: str, value: str) -> None:
    delivery = loads(config({"t": {"app": "oncall", receiver: value}})).targets["t"].app
    assert delivery is not None
    assert (delivery.receive_id_type, delivery.receive_id) == (receiver, value)


def test_email_mentions_are_fine_on_app_targets() -> None:
    target = loads(
        config({"t": chat(mentions={"critical": ["oncall@example.com", "ou_abc", "all"]})})
    ).targets["t"]
    assert target.mentions == {"critical": ("oncall@example.com", "ou_abc", "all")}


def test_explicit_keys_override_the_defaults() -> None:
    target = loads(
        config(
            {
                "t": chat(
                    update_in_place=False,
                    actions=["silence", "ack", "silence"],
                    silence_durations=["30m", "2h"],
                    language="en",
                    send_resolved=False,
                    rate_limit={"per_second": 2, "per_minute": 50},
                )
            },
            alertmanager=AM,
        )
    ).targets["t"]
    delivery = target.app
    assert delivery is not None
    assert delivery.update_in_place is False
    assert delivery.actions == ("silence", "ack")  # duplicates dropped, order kept
    assert delivery.silence_durations == ("30m", "2h")
    assert (target.language, target.send_resolved) == ("en", False)
    assert (target.rate_limit.per_second, target.rate_limit.per_minute) == (2, 50)


def test_no_actions_needs_no_verification_token() -> None:
    loaded = loads(
        config({"t": chat(actions=[])}, apps={"oncall": {**APP, "verification_token": None}})
    )
    assert loaded.apps["oncall"].verification_token is None
    assert loaded.targets["t"].app is not None


def test_app_secrets_come_from_files_and_env(tmp_path: Any) -> None:
    (tmp_path / "secret").write_text("from-a-file\n")
    data = config(
        {"t": chat()},
        apps={
            "oncall": {
                "app_id": "cli_a1",
                "app_secret_file": str(tmp_path / "secret"),
                "verification_token": "${VT}",
                "encrypt_key": "${EK:-fallback-key}",
            }
        },
        alertmanager={**AM, "bearer_token": "${AMT}"},
    )
    loaded = build_config(data, env={"VT": "vt-env", "AMT": "am-token"})
    app = loaded.apps["oncall"]
    assert app.app_secret == Secret("from-a-file")
    assert app.verification_token == Secret("vt-env")
    assert app.encrypt_key == Secret("fallback-key")
    assert repr(app.app_secret) == "<secret>" and "from-a-file" not in repr(app)
    assert loaded.alertmanager is not None
    assert loaded.alertmanager.bearer_token == Secret("am-token")
