"""The chart's Feishu app mode: app secrets as files, and the callback Ingress.

helm/amfeishu/README.md, "Feishu app mode", is what these tests hold the chart
to: the secrets of `appSecrets` live only in a Secret, mounted as files that
the rendered config names with `*_file`; `feishuCallback.ingress` routes
`/feishu/callback/` and nothing else of amfeishu's API; the NetworkPolicy lets
the ingress controller in. Rendered offline like tests/helm/test_chart.py.
"""

from __future__ import annotations

import ast
import base64
import inspect
import re
from types import ModuleType
from typing import Any

import pytest
import yaml

import amfeishu.app
import amfeishu.ui
from tests.support.chart import (
    CI,
    NAMESPACE,
    RELEASE,
    ci_values,
    container,
    kinds,
    one,
    pod_spec,
    render,
    secret_config,
    secret_data,
)

SECRETS_DIR = "/etc/amfeishu/secrets"
CALLBACK_PATH = "/feishu/callback/"
APP_CI = "app-values.yaml"
EXISTING_CI = "app-existing-secret-values.yaml"
CALLBACK_CIS = [APP_CI, EXISTING_CI]
APP_FIELDS = ("app_secret", "encrypt_key", "verification_token")
APP = {"app_id": "cli_a1b2c3d4e5f6"}
TARGET = {"app": "oncall", "chat_id": "oc_0123456789abcdef", "actions": ["ack"]}
SECRET = "s3cr3t-value-that-must-stay-hidden"


def callback_ingress(objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = [
        o
        for o in objects
        if o["kind"] == "Ingress" and o["metadata"]["name"].endswith("-feishu-callback")
    ]
    assert len(found) == 1, [o["metadata"]["name"] for o in objects if o["kind"] == "Ingress"]
    return found[0]


def prefix_matches(prefix: str, path: str) -> bool:
    """Kubernetes' pathType Prefix: element by element, split by '/'."""
    want = [e for e in prefix.split("/") if e]
    return [e for e in path.split("/") if e][: len(want)] == want


def api_paths() -> list[str]:
    """Every path amfeishu serves, read from its routes (amfeishu/app.py, amfeishu/ui.py)."""
    paths = []
    for module in (amfeishu.app, amfeishu.ui):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("Route", "post")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith("/")
            ):
                paths.append(re.sub(r"\{(\w+)\}", r"\1", str(node.args[0].value)))
    return paths


def given_secrets(values: dict[str, Any]) -> dict[str, str]:
    """The chart's Secret key → value of every secret in a values file's appSecrets."""
    secrets = values.get("appSecrets") or {}
    found = {
        f"apps.{app}.{field}": value
        for app, fields in (secrets.get("apps") or {}).items()
        for field, value in fields.items()
    }
    alertmanager = secrets.get("alertmanager") or {}
    if "bearer_token" in alertmanager:
        found["alertmanager.bearer_token"] = alertmanager["bearer_token"]
    if "password" in alertmanager:
        found["alertmanager.basic_auth.password"] = alertmanager["password"]
    return found


def volume(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(v for v in pod_spec(objects)["volumes"] if v["name"] == name)


def mount(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(m for m in container(objects)["volumeMounts"] if m["name"] == name)


def app_values(**more: Any) -> dict[str, Any]:
    """Values with one app target, plus `more` (top-level keys, `config` merged)."""
    config = {"apps": {"oncall": dict(APP)}, "targets": {"oncall-chat": dict(TARGET)}}
    config.update(more.pop("config", {}))
    return {"config": config, **more}


# ---- the callback Ingress ----------------------------------------------------------------


def test_the_path_is_the_one_amfeishu_serves_callbacks_at() -> None:
    callbacks = [p for p in api_paths() if p.startswith("/feishu/")]
    assert callbacks == ["/feishu/callback/app"]
    assert all(prefix_matches(CALLBACK_PATH, p) for p in callbacks)


@pytest.mark.parametrize("name", CALLBACK_CIS)
def test_callback_ingress_routes_exactly_the_callback_path(ci: CI, name: str) -> None:
    objects = ci(name)
    ingress = callback_ingress(objects)
    service = one(objects, "Service")
    rules = ingress["spec"]["rules"]
    assert [r.get("host") for r in rules] == ci_values(name)["feishuCallback"]["ingress"]["hosts"]
    for rule in rules:
        assert rule["http"]["paths"] == [
            {
                "path": CALLBACK_PATH,
                "pathType": "Prefix",
                "backend": {
                    "service": {
                        "name": service["metadata"]["name"],
                        "port": {"number": service["spec"]["ports"][0]["port"]},
                    }
                },
            }
        ]


@pytest.mark.parametrize("name", CALLBACK_CIS)
def test_callback_ingress_exposes_nothing_else_of_amfeishu(ci: CI, name: str) -> None:
    paths = [
        p["path"] for r in callback_ingress(ci(name))["spec"]["rules"] for p in r["http"]["paths"]
    ]
    served = api_paths()
    assert {"/alerts", "/-/reload", "/metrics", "/ui", "/feishu/callback/app"} <= set(served)
    exposed = sorted({p for p in served if any(prefix_matches(x, p) for x in paths)})
    assert exposed == ["/feishu/callback/app"]


def test_callback_ingress_takes_its_values(ci: CI) -> None:
    spec = callback_ingress(ci(APP_CI))["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [
        {"hosts": ["alerts-callback.example.com"], "secretName": "amfeishu-callback-tls"}
    ]
    annotations = callback_ingress(ci(APP_CI))["metadata"]["annotations"]
    assert annotations == {"cert-manager.io/cluster-issuer": "letsencrypt"}


def test_callback_ingress_without_hosts_answers_any_host(chart: Any) -> None:
    values = app_values(feishuCallback={"ingress": {"enabled": True, "hosts": []}})
    (rule,) = callback_ingress(render(chart, values))["spec"]["rules"]
    assert "host" not in rule
    assert [p["path"] for p in rule["http"]["paths"]] == [CALLBACK_PATH]


@pytest.mark.parametrize(
    ("values", "ingresses"),
    [
        ({}, []),
        ({"feishuCallback": {"ingress": {"enabled": True}}}, ["amfeishu-feishu-callback"]),
        ({"ingress": {"enabled": True}}, ["amfeishu"]),
        (
            {"ingress": {"enabled": True}, "feishuCallback": {"ingress": {"enabled": True}}},
            ["amfeishu", "amfeishu-feishu-callback"],
        ),
    ],
)
def test_the_callback_ingress_is_apart_from_the_whole_api_one(
    chart: Any, values: dict[str, Any], ingresses: list[str]
) -> None:
    objects = render(chart, values)
    names = sorted(o["metadata"]["name"] for o in objects if o["kind"] == "Ingress")
    assert names == ingresses
    for obj in objects:
        if obj["kind"] == "Ingress" and obj["metadata"]["name"] == "amfeishu":
            (rule,) = obj["spec"]["rules"]  # `ingress` as before: the whole API at /
            assert [p["path"] for p in rule["http"]["paths"]] == ["/"]


def test_notes_give_the_request_url_of_each_app(chart: Any) -> None:
    manifests = chart.render(ci_values(APP_CI), name=RELEASE, namespace=NAMESPACE)
    notes = next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
    assert "  https://alerts-callback.example.com/feishu/callback/oncall\n" in notes


# ---- the NetworkPolicy -------------------------------------------------------------------


def test_network_policy_lets_the_ingress_controller_in(ci: CI) -> None:
    policy = one(ci(APP_CI), "NetworkPolicy")["spec"]
    (rule,) = policy["ingress"]
    controller = ci_values(APP_CI)["feishuCallback"]["ingress"]["controllerFrom"]
    assert controller and all(peer in rule["from"] for peer in controller)
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    egress = [p["port"] for r in policy["egress"] for p in r.get("ports", [])]
    assert {443, 9093} <= set(egress)  # Feishu's API, Alertmanager's API


def test_network_policy_open_to_anyone_stays_open(chart: Any) -> None:
    values = app_values(
        networkPolicy={"enabled": True},
        feishuCallback={"ingress": {"enabled": True}},
    )
    (rule,) = one(render(chart, values), "NetworkPolicy")["spec"]["ingress"]
    assert "from" not in rule  # no peer list: every pod, the ingress controller too


# ---- app secrets -------------------------------------------------------------------------


def test_app_secrets_are_files_the_config_names(ci: CI) -> None:
    objects = ci(APP_CI)
    given = given_secrets(ci_values(APP_CI))
    assert len(given) == 4
    config = yaml.safe_load(secret_config(objects))
    app = config["apps"]["oncall"]
    for field in APP_FIELDS:
        assert field not in app
        assert app[f"{field}_file"] == f"{SECRETS_DIR}/apps.oncall.{field}"
    basic = config["alertmanager"]["basic_auth"]
    assert basic == {
        "username": "amfeishu",
        "password_file": f"{SECRETS_DIR}/alertmanager.basic_auth.password",
    }
    # the chart's Secret holds each under its key, mounted alone (not with config.yml)
    held = secret_data(objects)
    assert {k: held[k].decode() for k in given} == given
    assert set(held) == {"config.yml", *given}
    app_secrets = volume(objects, "app-secrets")["secret"]
    assert app_secrets["secretName"] == one(objects, "Secret")["metadata"]["name"]
    assert app_secrets["items"] == [{"key": k, "path": k} for k in given]
    assert mount(objects, "app-secrets") == {
        "name": "app-secrets",
        "mountPath": SECRETS_DIR,
        "readOnly": True,
    }


@pytest.mark.parametrize("name", CALLBACK_CIS)
def test_no_secret_value_leaves_the_secret(ci: CI, name: str) -> None:
    objects = ci(name)
    given = list(given_secrets(ci_values(name)).values())
    assert given
    if name == APP_CI:  # the values: only in the Secret's own keys, not in config.yml
        assert {"ConfigMap", "Secret"} <= kinds(objects)
        forms = given + [base64.b64encode(s.encode()).decode() for s in given]
        assert [s for s in given if s in secret_config(objects).decode()] == []
    else:  # key names of an existing Secret: in config.yml only, not in the Deployment
        forms = given
    for obj in objects:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj, allow_unicode=True)
        leaked = [s for s in forms if s in text]
        assert leaked == [], f"{obj['kind']}/{obj['metadata']['name']} holds {leaked}"


def test_existing_secret_holds_the_app_secrets(ci: CI) -> None:
    objects = ci(EXISTING_CI)
    secrets = ci_values(EXISTING_CI)["appSecrets"]
    assert set(secret_data(objects)) == {"config.yml"}  # the chart stores no value
    app_secrets = volume(objects, "app-secrets")["secret"]
    # mounted whole: the key names reach config.yml only, not the Deployment
    assert app_secrets == {"secretName": secrets["existingSecret"], "defaultMode": 0o440}
    assert mount(objects, "app-secrets")["mountPath"] == SECRETS_DIR
    config = yaml.safe_load(secret_config(objects))
    assert config["apps"]["oncall"] == {
        "app_id": "cli_a1b2c3d4e5f6",
        "domain": "lark",
        "app_secret_file": f"{SECRETS_DIR}/oncall-app-secret",
        "verification_token_file": f"{SECRETS_DIR}/oncall-verification-token",
    }
    assert config["alertmanager"]["bearer_token_file"] == f"{SECRETS_DIR}/alertmanager-token"


def test_no_app_secrets_no_mount(ci: CI) -> None:
    for name in ("default-values.yaml", "everything-on-values.yaml"):
        objects = ci(name)
        assert all(v["name"] != "app-secrets" for v in pod_spec(objects)["volumes"])
        assert set(secret_data(objects)) == {"config.yml"}


def test_inline_and_env_app_secrets_are_left_as_written(chart: Any) -> None:
    app = {**APP, "app_secret": "${FEISHU_APP_SECRET}", "verification_token_file": "/x/token"}
    objects = render(chart, app_values(config={"apps": {"oncall": app}}))
    assert yaml.safe_load(secret_config(objects))["apps"]["oncall"] == app


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            app_values(appSecrets={"apps": {"pager": {"app_secret": SECRET}}}),
            'appSecrets.apps.pager: config.apps has no app "pager" (known: oncall)',
        ),
        (
            app_values(
                config={"apps": {"oncall": {**APP, "app_secret": "${X}"}}},
                appSecrets={"apps": {"oncall": {"app_secret": SECRET}}},
            ),
            "appSecrets.apps.oncall.app_secret: config.apps.oncall sets app_secret already",
        ),
        (
            app_values(
                config={"apps": {"oncall": {**APP, "encrypt_key_file": "/k"}}},
                appSecrets={"apps": {"oncall": {"encrypt_key": SECRET}}},
            ),
            "appSecrets.apps.oncall.encrypt_key: config.apps.oncall sets encrypt_key already",
        ),
        (
            app_values(appSecrets={"alertmanager": {"bearer_token": SECRET}}),
            "appSecrets.alertmanager: config.alertmanager is not set",
        ),
        (
            app_values(
                config={"alertmanager": {"url": "http://am:9093", "bearer_token": "${T}"}},
                appSecrets={"alertmanager": {"bearer_token": SECRET}},
            ),
            "appSecrets.alertmanager.bearer_token: config.alertmanager sets bearer_token already",
        ),
        (
            app_values(
                config={"alertmanager": {"url": "http://am:9093"}},
                appSecrets={"alertmanager": {"password": SECRET}},
            ),
            "appSecrets.alertmanager.password: set config.alertmanager.basic_auth.username too",
        ),
        (
            {
                "existingSecret": "whole-config",
                "appSecrets": {"apps": {"oncall": {"app_secret": SECRET}}},
            },
            "appSecrets is set but so is existingSecret (whole-config)",
        ),
        (
            app_values(
                appSecrets={
                    "existingSecret": "feishu",
                    "apps": {"oncall": {"app_secret": SECRET + " /x"}},
                }
            ),
            "appSecrets: with existingSecret the value of apps.oncall.app_secret is the key",
        ),
        (
            app_values(
                feishuCallback={"ingress": {"enabled": True}},
                networkPolicy={"enabled": True, "ingressFrom": [{"podSelector": {}}]},
            ),
            "feishuCallback.ingress.enabled with networkPolicy.ingressFrom: set"
            " feishuCallback.ingress.controllerFrom",
        ),
    ],
)
def test_render_refuses_app_settings_that_would_not_work(
    chart: Any, helm: ModuleType, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(chart, values)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"appSecrets": {"apps": {"oncall": {"app_secret_file": "/x"}}}}, "app_secret_file"),
        ({"appSecrets": {"apps": {"oncall": {"app_secret": ""}}}}, "app_secret"),
        ({"feishuCallback": {"ingress": {"paths": ["/"]}}}, "paths"),
        ({"config": {"apps": {"oncall": {"app_id": "a1b2"}}}}, "app_id"),
        ({"config": {"targets": {"t": {"app": "a", "actions": ["ack", "snooze"]}}}}, "actions"),
        ({"config": {"alertmanager": {"url": "http://am", "token": "x"}}}, "token"),
    ],
)
def test_values_schema_rejects_app_mistakes(
    chart: Any, helm: ModuleType, values: dict[str, Any], key: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=key):
        render(chart, values)
