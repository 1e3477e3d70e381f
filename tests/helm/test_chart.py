"""The Helm chart, rendered offline: lint, Kubernetes schemas, and what the pods get.

helm-python-sdk (Helm 4 compiled in) lints and renders without a cluster or a
helm binary; kubernetes-validate checks every object against the Kubernetes
OpenAPI schemas in strict mode. Both are test tools (make test installs them):
without them these tests skip, and fail under AMFEISHU_REQUIRE_E2E=1.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.support.chart import (
    CHART,
    CI,
    CI_DIR,
    NAMESPACE,
    RELEASE,
    ci_values,
    container,
    installed,
    is_test_hook,
    kinds,
    one,
    pod_spec,
    render,
    secret_config,
    secret_data,
)

CI_FILES = sorted(p.name for p in CI_DIR.glob("*-values.yaml"))
FULLNAME = "amfeishu"  # the release name contains the chart name
DIGEST = "sha256:" + "0123456789abcdef" * 4
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}  # no offline schema: checked by hand below
OPTIONAL_KINDS = {"PersistentVolumeClaim", "PodDisruptionBudget", "NetworkPolicy", "Ingress"}
AMFEISHU = Path(sys.executable).parent / "amfeishu"
TEMPLATES_DIR = "/etc/amfeishu/templates"
NO_REDIS = (
    "replicaCount is 2 but config.storage.redis_url is not set: replicas must share dedup"
    " and rate-limit state through Redis"
)
# Jinja that Helm must never touch: its {{ }} would be Helm's own actions under tpl.
HOSTILE_TEMPLATE = (
    "  {#- leading spaces, a comment -#}\n"
    '{%- set x = {"a": [1, 2]} %}\n'
    '{{ "{{" }} {{- x.a | join(",") -}} {{ "}}" }}\n'
    '{{ .Values.config }} {{ template "amfeishu.fullname" . }} {{ include "x" . | nindent 4 }}\n'
    "{% raw %}{{ $labels.instance }}{% endraw %} ${FEISHU_WEBHOOK} ${X:-y} $$ %% \\n \\\" '\n"
    "tab\there, trailing space \n"
    "中文 🔥 <at id=all></at> & < > \r\n"
    "|\n- not a list\nkey: not a map\n---\n...\n"
)


def annotations(objects: list[dict[str, Any]]) -> dict[str, str]:
    return one(objects, "Deployment")["spec"]["template"]["metadata"].get("annotations") or {}


def template_files(objects: list[dict[str, Any]]) -> dict[str, str]:
    """Path under the templates dir → content, as the kubelet lays the ConfigMap out."""
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "templates")
    name = volume["configMap"]["name"]
    data = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name)[
        "data"
    ]
    return {item["path"]: data[item["key"]] for item in volume["configMap"]["items"]}


# ---- lint and schemas ------------------------------------------------------------------


def test_ci_values_files_are_the_expected_ones() -> None:
    assert CI_FILES == [
        "app-existing-secret-values.yaml",
        "app-values.yaml",
        "custom-templates-values.yaml",
        "default-values.yaml",
        "everything-on-values.yaml",
        "existing-secret-values.yaml",
        "ha-values.yaml",
    ]


@pytest.mark.parametrize("name", CI_FILES)
def test_lint_passes(helm: ModuleType, name: str) -> None:
    report = helm.lint(str(CHART), ci_values(name), strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("name", CI_FILES)
def test_every_manifest_validates_strictly(
    ci: CI, kubernetes_validate: ModuleType, name: str
) -> None:
    objects = ci(name)
    assert {"Deployment", "Service", "ServiceAccount"} <= kinds(objects)
    versions = [kubernetes_validate.utils.all_versions()[0], kubernetes_validate.latest_version()]
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} @ {version}: {where}: {exc}")


@pytest.mark.parametrize("name", CI_FILES)
def test_objects_carry_standard_labels_and_namespace(ci: CI, name: str) -> None:
    for obj in ci(name):
        labels = obj["metadata"]["labels"]
        # the test Pod has a name of its own: no selector of the release's pods picks it
        assert labels["app.kubernetes.io/name"] == (
            "amfeishu-test" if is_test_hook(obj) else "amfeishu"
        )
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["helm.sh/chart"] == "amfeishu-0.1.0"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert obj["metadata"]["namespace"] == NAMESPACE


def test_fullname_is_cut_to_63_characters(chart: Any) -> None:
    long_name = "a-release-name-that-is-quite-long-for-a-release-x"
    objects = render(chart, {"fullnameOverride": long_name + "-" + "x" * 40 + "-"})
    names = {o["metadata"]["name"] for o in objects}
    assert all(len(n) <= 63 and not n.endswith("-") for n in names), names
    assert one(objects, "Deployment")["metadata"]["name"] == (long_name + "-" + "x" * 40)[:63]


def test_values_schema_rejects_a_config_typo(chart: Any, helm: ModuleType) -> None:
    with pytest.raises(helm.HelmValuesError, match="targetz"):
        render(chart, {"config": {"targetz": {}}})


def helm_docs() -> tuple[dict[str, str], list[str]]:
    """values.yaml's keys with their own `# --` comment, and the keys with none.

    A map is documented by its own comment, or by all its keys'.
    """
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    documented: dict[str, str] = {}
    missing: list[str] = []

    def walk(node: yaml.Node, path: str) -> None:
        for key, value in node.value:
            dotted = f"{path}.{key.value}" if path else key.value
            comment = []
            line = key.start_mark.line - 1
            while line >= 0 and lines[line].lstrip().startswith("#"):
                comment.append(lines[line].strip())
                line -= 1
            if any(c.startswith("# -- ") for c in comment):
                documented[dotted] = " ".join(reversed(comment))
            elif isinstance(value, yaml.MappingNode) and value.value:
                walk(value, dotted)
            else:
                missing.append(dotted)

    walk(yaml.compose(text), "")
    return documented, missing


def test_every_values_key_has_a_helm_docs_comment() -> None:
    _, missing = helm_docs()
    assert missing == [], f"values.yaml keys without a `# --` comment: {missing}"


def test_every_documented_values_key_is_in_the_readme_table() -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    documented, _ = helm_docs()
    absent = [key for key in documented if f"| `{key}` |" not in readme]
    assert absent == [], f"helm/amfeishu/README.md's Values table lacks {absent}"


# ---- the pod ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", CI_FILES)
def test_pods_are_hardened(ci: CI, name: str) -> None:
    objects = ci(name)
    spec = pod_spec(objects)
    assert spec["automountServiceAccountToken"] is False
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(objects)
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # the only writable places: the outbox volume and /tmp
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts["/etc/amfeishu/config"]["readOnly"] is True
    assert "/var/lib/amfeishu" in mounts
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8064, "protocol": "TCP"}]
    assert c["args"][:5] == [
        "serve",
        "--config",
        "/etc/amfeishu/config/config.yml",
        "--listen",
        "0.0.0.0:8064",
    ]


def test_defaults_add_nothing_optional(ci: CI) -> None:
    objects = ci("default-values.yaml")
    assert kinds(installed(objects)) == {"Deployment", "Secret", "Service", "ServiceAccount"}
    assert [o["kind"] for o in objects if is_test_hook(o)] == ["Pod"]  # for `helm test` only
    assert container(objects)["resources"] == {}
    assert one(objects, "Deployment")["spec"]["replicas"] == 1
    service = one(objects, "Service")
    assert service["spec"]["ports"][0]["port"] == 8064
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    data = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "data")
    assert "emptyDir" in data
    # no targets given: the preview target, as `amfeishu serve` without a config
    config = yaml.safe_load(secret_config(objects))
    assert config["targets"] == {"default": {}}
    assert config["routes"] == [{"targets": ["default"]}]
    assert config["storage"]["path"] == "/var/lib/amfeishu/outbox.db"
    assert "dir" not in config["templates"]


def test_everything_on_renders_every_optional_resource(ci: CI) -> None:
    objects = ci("everything-on-values.yaml")
    assert OPTIONAL_KINDS | CRD_KINDS | {"ConfigMap"} <= kinds(objects)
    config_maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    assert config_maps == {"amfeishu-templates", "amfeishu-dashboard", "corporate-ca"}
    spec = pod_spec(objects)
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert (
        data["persistentVolumeClaim"]["claimName"]
        == one(objects, "PersistentVolumeClaim")["metadata"]["name"]
    )
    # one SQLite outbox on a ReadWriteOnce volume: never two pods at once
    assert one(objects, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert "--web.enable-ui" in container(objects)["args"]


def test_network_policy_lets_in_the_http_port_and_out_dns_and_https(ci: CI) -> None:
    policy = one(ci("everything-on-values.yaml"), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert policy["ingress"][0]["from"][0]["namespaceSelector"]
    egress_ports = [p["port"] for rule in policy["egress"] for p in rule.get("ports", [])]
    assert {53, 443, 6379} <= set(egress_ports)


def test_service_monitor_scrapes_metrics_of_the_service(ci: CI) -> None:
    objects = ci("everything-on-values.yaml")
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()


def test_prometheus_rule_alerts_on_amfeishu_itself(ci: CI) -> None:
    objects = ci("everything-on-values.yaml")
    rules = one(objects, "PrometheusRule")["spec"]["groups"][0]["rules"]
    by_name = {r["alert"]: r for r in rules}
    # AmfeishuDown is disabled in everything-on-values.yaml
    assert set(by_name) == {
        "AmfeishuDeliveriesFailing",
        "AmfeishuDeadLetters",
        "AmfeishuConfigReloadFailed",
        "AmfeishuOutboxGrowing",
        "AmfeishuTemplateErrors",
    }
    metrics = {
        "AmfeishuDeliveriesFailing": "amfeishu_delivery_attempts_total",
        "AmfeishuDeadLetters": "amfeishu_dead_letters",
        "AmfeishuConfigReloadFailed": "amfeishu_config_last_reload_successful",
        "AmfeishuOutboxGrowing": "amfeishu_outbox_depth",
    }
    job = f'job="{one(objects, "Service")["metadata"]["name"]}"'  # the ServiceMonitor's job
    for name, metric in metrics.items():
        rule = by_name[name]
        assert metric in rule["expr"] and job in rule["expr"], rule["expr"]
        assert rule["expr"].count("(") == rule["expr"].count(")")
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["labels"]["team"] == "platform"
        assert rule["annotations"]["runbook_url"].endswith("#" + name.lower())
    # Prometheus' own {{ }} survive Helm
    assert "{{ $labels.target }}" in by_name["AmfeishuDeadLetters"]["annotations"]["summary"]
    assert "{{ $value }}" in by_name["AmfeishuDeadLetters"]["annotations"]["description"]


# ---- helm test -------------------------------------------------------------------------


def helm_test_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one([o for o in objects if is_test_hook(o)], "Pod")


@pytest.mark.parametrize("name", CI_FILES)
def test_helm_test_pod_asks_the_service_whether_amfeishu_is_ready(ci: CI, name: str) -> None:
    objects = ci(name)
    pod = helm_test_pod(objects)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    (c,) = spec["containers"]
    service = one(objects, "Service")
    port = service["spec"]["ports"][0]["port"]
    assert c["command"][0] == "wget"
    assert c["command"][-1] == f"http://{service['metadata']['name']}:{port}/-/ready"
    # hardened like amfeishu's own pods (Pod Security Standard "restricted")
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["resources"]["limits"]["memory"]
    # no selector of the release's pods picks it: not a Service endpoint, not counted by the
    # PodDisruptionBudget, not confined by the NetworkPolicy's egress rules
    labels = pod["metadata"]["labels"].items()
    selectors = [
        service["spec"]["selector"],
        one(objects, "Deployment")["spec"]["selector"]["matchLabels"],
    ]
    for obj in objects:
        if obj["kind"] == "PodDisruptionBudget":
            selectors.append(obj["spec"]["selector"]["matchLabels"])
        if obj["kind"] == "NetworkPolicy":
            selectors.append(obj["spec"]["podSelector"]["matchLabels"])
    for selector in selectors:
        assert not selector.items() <= labels, selector


def test_network_policy_lets_the_test_pod_in(ci: CI) -> None:
    objects = ci("everything-on-values.yaml")
    labels = helm_test_pod(objects)["metadata"]["labels"].items()
    peers = one(objects, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    own = [
        peer
        for peer in peers
        if set(peer) == {"podSelector"} and peer["podSelector"]["matchLabels"].items() <= labels
    ]
    assert len(own) == 1 and own[0]["podSelector"]["matchLabels"], peers


@pytest.mark.parametrize(
    ("values", "image", "url"),
    [
        ({}, "docker.io/library/busybox:1.37.0", "http://amfeishu:8064/-/ready"),
        (
            {
                "service": {"port": 9000},
                "testFramework": {
                    "image": {"registry": "", "repository": "mirror/busybox", "digest": DIGEST}
                },
            },
            f"mirror/busybox@{DIGEST}",
            "http://amfeishu:9000/-/ready",
        ),
        (
            {"config": {"tls": {"cert_file": "/tls/tls.crt", "key_file": "/tls/tls.key"}}},
            "docker.io/library/busybox:1.37.0",
            "https://amfeishu:8064/-/ready",
        ),
    ],
)
def test_helm_test_pod_follows_the_values(
    chart: Any, values: dict[str, Any], image: str, url: str
) -> None:
    (c,) = helm_test_pod(render(chart, values))["spec"]["containers"]
    assert c["image"] == image
    assert c["command"][-1] == url
    # a readiness check, not a certificate check: the cluster's CA is not in busybox
    assert ("--no-check-certificate" in c["command"]) == url.startswith("https:")


def test_helm_test_pod_can_be_left_out(chart: Any) -> None:
    objects = render(chart, {"testFramework": {"enabled": False}})
    assert not any(is_test_hook(o) for o in objects)


# ---- extraObjects ----------------------------------------------------------------------


def test_extra_objects_are_rendered_with_tpl(chart: Any) -> None:
    as_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": '{{ include "amfeishu.fullname" . }}-extra',
            "namespace": "{{ .Release.Namespace }}",
        },
        "data": {"rule": '{{ "{{" }} $labels.pod {{ "}}" }}', "plain": "${NOT_HELMS}"},
    }
    as_text = (
        "apiVersion: v1\n"
        "kind: ServiceAccount\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}-extra\n"
        "  labels:\n"
        '    {{- include "amfeishu.labels" . | nindent 4 }}\n'
    )
    objects = render(chart, {"extraObjects": [as_map, as_text]}, release="ops")
    extra = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    config_map = extra["ConfigMap", "ops-amfeishu-extra"]
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert config_map["data"] == {"rule": "{{ $labels.pod }}", "plain": "${NOT_HELMS}"}
    account = extra["ServiceAccount", "ops-extra"]
    assert account["metadata"]["labels"]["app.kubernetes.io/instance"] == "ops"
    assert kinds(render(chart, {"extraObjects": []})) == kinds(render(chart, {}))


def test_everything_on_creates_the_config_map_its_extra_volume_mounts(ci: CI) -> None:
    objects = ci("everything-on-values.yaml")
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "extra-ca")
    name = volume["configMap"]["name"]
    assert [o["kind"] for o in objects if o["metadata"]["name"] == name] == ["ConfigMap"]


# ---- config and templates --------------------------------------------------------------


def test_config_checksum_follows_the_config(chart: Any) -> None:
    base = render(chart, {})
    changed = render(chart, {"config": {"dedup": {"ttl": "10m"}}})
    checksum = annotations(base)["checksum/config"]
    assert checksum == hashlib.sha256(secret_config(base)).hexdigest()
    assert (
        annotations(changed)["checksum/config"]
        == hashlib.sha256(secret_config(changed)).hexdigest()
    )
    assert annotations(changed)["checksum/config"] != checksum
    assert render(chart, {}) == base  # stable: no random or time-dependent input


def test_templates_checksum_follows_the_templates(chart: Any) -> None:
    first = render(chart, {"templates": {"files": {"default.json.j2": "{{ a }}"}}})
    second = render(chart, {"templates": {"files": {"default.json.j2": "{{ b }}"}}})
    assert annotations(first)["checksum/templates"] != annotations(second)["checksum/templates"]
    assert annotations(first)["checksum/config"] == annotations(second)["checksum/config"]
    assert "checksum/templates" not in annotations(render(chart, {}))


def test_custom_templates_reach_the_pod_byte_for_byte(ci: CI) -> None:
    values = ci_values("custom-templates-values.yaml")
    objects = ci("custom-templates-values.yaml")
    files = template_files(objects)
    given = values["templates"]["files"]
    assert files == {
        "default/firing-critical.json.j2": given["firing-critical.json.j2"],
        "compact/default.json.j2": given["compact/default.json.j2"],
    }
    assert all(s in given["firing-critical.json.j2"] for s in ("{{ ", "{%- ", "{{- ", "{#- "))
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "templates")
    assert mount == {"name": "templates", "mountPath": TEMPLATES_DIR, "readOnly": True}
    config = yaml.safe_load(secret_config(objects))
    assert config["templates"]["dir"] == TEMPLATES_DIR
    assert config["templates"]["language"] == "zh"  # the rest of the section is kept


def test_hostile_template_is_not_touched_by_helm(chart: Any) -> None:
    files = {"default.json.j2": HOSTILE_TEMPLATE, "other/x.json.j2": HOSTILE_TEMPLATE * 2}
    objects = render(chart, {"templates": {"files": files}})
    got = template_files(objects)
    assert got["default/default.json.j2"].encode() == HOSTILE_TEMPLATE.encode()
    assert got["other/x.json.j2"].encode() == (HOSTILE_TEMPLATE * 2).encode()


def test_config_reaches_the_secret_verbatim(chart: Any) -> None:
    tricky = {
        "webhook": "${FEISHU_OPS_WEBHOOK}",
        "secret": "{{ not a helm action }} ${X:-{{y}}}",
        "keyword": "告警 | : # '\"",
    }
    objects = render(chart, {"config": {"targets": {"ops": tricky}}})
    config = yaml.safe_load(secret_config(objects))
    assert config["targets"] == {"ops": tricky}
    assert "routes" not in config or config["routes"] == []


def test_existing_config_map_is_mounted_as_the_template_set(chart: Any) -> None:
    objects = render(chart, {"templates": {"existingConfigMap": "my-cards", "set": "team"}})
    assert "ConfigMap" not in kinds(objects)
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "templates")
    assert volume["configMap"] == {"name": "my-cards", "defaultMode": 0o444}
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "templates")
    assert mount["mountPath"] == TEMPLATES_DIR + "/team"
    assert yaml.safe_load(secret_config(objects))["templates"]["dir"] == TEMPLATES_DIR
    assert "checksum/templates" not in annotations(objects)


def test_existing_secret_replaces_the_chart_secret(ci: CI) -> None:
    objects = ci("existing-secret-values.yaml")
    assert "Secret" not in kinds(objects)
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "config")
    assert volume["secret"]["secretName"] == "amfeishu-config"
    # mounted whole: its config.yml may name more of its keys (app secrets) as *_file
    assert "items" not in volume["secret"]
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "config")
    assert mount == {"name": "config", "mountPath": "/etc/amfeishu/config", "readOnly": True}
    assert container(objects)["envFrom"] == [{"secretRef": {"name": "amfeishu-env"}}]
    assert "checksum/config" not in annotations(objects)  # amfeishu reloads it on change


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, NO_REDIS),
        (
            {"replicaCount": 2, "config": {"storage": {"path": "/var/lib/amfeishu/x.db"}}},
            NO_REDIS,
        ),
        (
            {"replicaCount": 2, "existingSecret": "mine"},
            "replicaCount is 2 but existingSecretUsesRedis is false: replicas must share dedup"
            " and rate-limit state through Redis",
        ),
        (
            {"templates": {"files": {"a.j2": "x", "default/a.j2": "y"}}},
            'templates.files: "a.j2" and "default/a.j2" map to the same ConfigMap key',
        ),
        (
            {"templates": {"files": {"x.j2": "x"}, "existingConfigMap": "y"}},
            "set templates.files or templates.existingConfigMap, not both",
        ),
    ],
)
def test_render_refuses_what_would_misbehave(
    chart: Any, helm: ModuleType, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(chart, values)
    assert message in str(caught.value)


def test_replicas_with_redis_roll_without_downtime(ci: CI, chart: Any) -> None:
    objects = ci("ha-values.yaml")
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    config = yaml.safe_load(secret_config(objects))
    assert config["storage"]["redis_url"].startswith("${REDIS_URL:-redis://")
    objects = render(
        chart, {"replicaCount": 3, "existingSecret": "s", "existingSecretUsesRedis": True}
    )
    assert one(objects, "Deployment")["spec"]["replicas"] == 3


# ---- the config passes amfeishu's own check ---------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # without a default
SECRETS_DIR = "/etc/amfeishu/secrets"


def file_keys(node: Any) -> list[tuple[dict[str, Any], str, str]]:
    """Every `*_file` key of a config: (its section, the key, the file)."""
    found: list[tuple[dict[str, Any], str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key).endswith("_file") and isinstance(value, str):
                found.append((node, str(key), value))
            else:
                found += file_keys(value)
    return found


def _fake_env(name: str) -> str:
    if "WEBHOOK" in name:
        return "https://open.feishu.cn/open-apis/bot/v2/hook/00000000-0000-0000-0000-000000000000"
    if "REDIS" in name:
        return "redis://127.0.0.1:6379/0"
    return f"test-{name.lower()}"


@pytest.mark.parametrize("name", [n for n in CI_FILES if n != "existing-secret-values.yaml"])
def test_rendered_config_passes_check_config(ci: CI, name: str, tmp_path: Path) -> None:
    objects = ci(name)
    text = secret_config(objects).decode()
    config = yaml.safe_load(text)
    # every variable the config needs is given to the pod
    needed = set(_VAR.findall(text))
    c = container(objects)
    given = {e["name"] for e in c.get("env", [])}
    assert needed <= given or c.get("envFrom"), f"{needed - given} reach the pod from nowhere"
    # the container's paths, moved under tmp_path: the templates laid out like the kubelet does
    if "dir" in config.get("templates", {}):
        for path, content in template_files(objects).items():
            file = tmp_path / "templates" / path
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(content, encoding="utf-8")
        config["templates"]["dir"] = str(tmp_path / "templates")
    config["storage"]["path"] = str(tmp_path / "outbox.db")
    # the app secrets' files, laid out from the chart's Secret (or made up: an existing Secret)
    held = secret_data(objects)
    for section, key, file in file_keys(config):
        if file.startswith(SECRETS_DIR + "/"):
            name = file.removeprefix(SECRETS_DIR + "/")
            moved = tmp_path / "secrets" / name
            moved.parent.mkdir(exist_ok=True)
            moved.write_bytes(held.get(name, f"test-{name}".encode()))
            section[key] = str(moved)
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, **{var: _fake_env(var) for var in needed}}
    result = subprocess.run(
        [str(AMFEISHU), "check-config", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"check-config failed:\n{result.stderr}\n--- config:\n{text}"
