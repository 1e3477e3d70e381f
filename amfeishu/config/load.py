"""YAML → Config: env expansion, durations, secrets and their *_file twins.

Every problem is collected with its path (`targets.ops.rate_limit.per_second:
must be > 0, got -1`) so `check-config` can print them all at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from amfeishu.config.apps import (
    ALERTMANAGER_KEYS,
    APP_KEYS,
    APP_TARGET_KEYS,
    check_app_targets,
    parse_alertmanager,
    parse_app_delivery,
    parse_apps,
)
from amfeishu.config.apps import BASIC_AUTH_KEYS as AM_BASIC_AUTH_KEYS
from amfeishu.config.reader import ConfigError, Reader, join, kind
from amfeishu.config.types import (
    CARD_KINDS,
    EMAIL,
    LANGUAGES,
    MSG_TYPES,
    OPEN_ID,
    TLS,
    AlertmanagerAPI,
    Auth,
    Config,
    Dedup,
    Delivery,
    Grouping,
    RateLimit,
    Route,
    Storage,
    Target,
    Templates,
)
from amfeishu.feishu.webhook import validate_webhook
from amfeishu.matchers import Matcher, MatcherError, parse_matchers

_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

# The keys each section accepts: the reader rejects any other, and
# tests/helm/test_schema.py holds the Helm chart's values schema to the same lists.
TOP_KEYS = (
    "listen",
    "tls",
    "auth",
    "templates",
    "dedup",
    "grouping",
    "storage",
    "delivery",
    "targets",
    "routes",
    "apps",
    "alertmanager",
)
TLS_KEYS = ("cert_file", "key_file", "client_ca_file")
AUTH_KEYS = ("bearer_token", "bearer_token_file", "basic_auth")
BASIC_AUTH_KEYS = ("username", "password", "password_file")
TEMPLATES_KEYS = ("dir", "language", "timezone")
DEDUP_KEYS = ("ttl", "max_entries")
GROUPING_KEYS = ("wait", "max_alerts_per_card")
STORAGE_KEYS = ("path", "redis_url", "redis_url_file")
DELIVERY_KEYS = ("timeout", "max_retry_age")
TARGET_KEYS = (
    "webhook",
    "webhook_file",
    "secret",
    "secret_file",
    "template",
    "language",
    "timezone",
    "send_resolved",
    "mentions",
    "mention_label",
    "rate_limit",
    "msg_type",
    "keyword",
    "card_template_id",
    "card_template_version",
    *APP_TARGET_KEYS,
)
RATE_LIMIT_KEYS = ("per_second", "per_minute")
ROUTE_KEYS = ("matchers", "targets", "continue")
# Section path → its keys; `*` is any target name, `[]` any item of a list.
SECTIONS: dict[str, tuple[str, ...]] = {
    "": TOP_KEYS,
    "tls": TLS_KEYS,
    "auth": AUTH_KEYS,
    "auth.basic_auth": BASIC_AUTH_KEYS,
    "templates": TEMPLATES_KEYS,
    "dedup": DEDUP_KEYS,
    "grouping": GROUPING_KEYS,
    "storage": STORAGE_KEYS,
    "delivery": DELIVERY_KEYS,
    "targets.*": TARGET_KEYS,
    "targets.*.rate_limit": RATE_LIMIT_KEYS,
    "targets.*.mentions": CARD_KINDS,
    "routes[]": ROUTE_KEYS,
    "apps.*": APP_KEYS,
    "alertmanager": ALERTMANAGER_KEYS,
    "alertmanager.basic_auth": AM_BASIC_AUTH_KEYS,
}


def _target(
    r: Reader,
    name: str,
    data: Any,
    templates: Templates,
    alertmanager: AlertmanagerAPI | None = None,
) -> Target:
    path = f"targets.{name}"
    if not _TARGET_NAME.match(name):
        r.problem(
            path,
            "name must be letters, digits, '_', '.', '-' (it is used in URLs and metric labels)",
        )
    d = r.section(data, path, TARGET_KEYS)
    app = parse_app_delivery(r, d, path, alertmanager)
    webhook = r.secret(d, "webhook", path)
    if webhook is not None and (why := validate_webhook(webhook.get())):
        r.problem(join(path, "webhook"), why)
    rate = r.section(d.get("rate_limit"), join(path, "rate_limit"), RATE_LIMIT_KEYS)
    rate_path = join(path, "rate_limit")
    return Target(
        name=name,
        webhook=webhook,
        secret=r.secret(d, "secret", path),
        template=r.string(d, "template", path, "default") or "default",
        language=r.choice(d, "language", path, templates.language, LANGUAGES),
        timezone=r.timezone(d, "timezone", path, templates.timezone),
        send_resolved=r.boolean(d, "send_resolved", path, True),
        mentions=_mentions(r, d.get("mentions"), join(path, "mentions"), emails=app is not None),
        mention_label=r.string(d, "mention_label", path, "feishu_mention") or "feishu_mention",
        rate_limit=RateLimit(
            per_second=r.number(rate, "per_second", rate_path, 5.0),
            per_minute=r.number(rate, "per_minute", rate_path, 100.0),
        ),
        msg_type=r.choice(d, "msg_type", path, "interactive", MSG_TYPES),
        keyword=r.string(d, "keyword", path),
        card_template_id=r.string(d, "card_template_id", path),
        card_template_version=r.string(d, "card_template_version", path),
        app=app,
    )


def _mentions(r: Reader, data: Any, path: str, *, emails: bool) -> dict[str, tuple[str, ...]]:
    """'all' or open_ids; app targets also take emails (<at email=…>)."""
    d = r.section(data, path, CARD_KINDS)
    out: dict[str, tuple[str, ...]] = {}
    for severity, ids in d.items():
        item_path = join(path, str(severity))
        if isinstance(ids, str):
            ids = [ids]
        if not isinstance(ids, list):
            r.problem(item_path, f"must be a list of open_ids or 'all', got {kind(ids)}")
            continue
        good: list[str] = []
        for i, who in enumerate(ids):
            who = r.expand(str(who), f"{item_path}[{i}]")
            if who != "all" and not OPEN_ID.fullmatch(who):
                if emails and EMAIL.fullmatch(who):
                    good += [] if who in good else [who]
                    continue
                r.problem(
                    f"{item_path}[{i}]",
                    f"must be 'all' or an open_id like ou_xxx, got {who!r}"
                    + (" or an email" if emails else " (custom bots cannot @ by email)"),
                )
            elif who not in good:
                good.append(who)
        out[str(severity)] = tuple(good)
    return out


def _routes(r: Reader, data: Any, targets: dict[str, Target]) -> tuple[Route, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        r.problem("routes", f"must be a list, got {kind(data)}")
        return ()
    routes: list[Route] = []
    for i, item in enumerate(data):
        path = f"routes[{i}]"
        d = r.section(item, path, ROUTE_KEYS)
        matchers: list[Matcher] = []
        raw_matchers = d.get("matchers") or []
        if not isinstance(raw_matchers, list):
            r.problem(
                join(path, "matchers"), f"must be a list of strings, got {kind(raw_matchers)}"
            )
            raw_matchers = []
        for j, text in enumerate(raw_matchers):
            try:
                matchers.extend(parse_matchers(r.expand(str(text), f"{path}.matchers[{j}]")))
            except MatcherError as exc:
                r.problem(f"{path}.matchers[{j}]", str(exc))
        names = d.get("targets")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names:
            r.problem(join(path, "targets"), "must be a non-empty list of target names")
            names = []
        for name in names:
            if str(name) not in targets:
                r.problem(
                    join(path, "targets"),
                    f"unknown target {name!r} (known: {', '.join(sorted(targets)) or 'none'})",
                )
        routes.append(
            Route(
                tuple(matchers), tuple(str(n) for n in names), r.boolean(d, "continue", path, False)
            )
        )
    return tuple(routes)


def build_config(
    data: Any,
    *,
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    source: str = "",
) -> Config:
    """A parsed YAML document → Config, or ConfigError listing every problem."""
    r = Reader(os.environ if env is None else env, base_dir or Path.cwd())
    if data is None:
        data = {}
    top = r.section(data, "", TOP_KEYS)
    tpl = r.section(top.get("templates"), "templates", TEMPLATES_KEYS)
    templates = Templates(
        dir=r.string(tpl, "dir", "templates"),
        language=r.choice(tpl, "language", "templates", "zh", LANGUAGES),
        timezone=r.timezone(tpl, "timezone", "templates", "Asia/Shanghai"),
    )
    if templates.dir is not None and not os.path.isdir(_resolve(r, templates.dir)):
        r.problem("templates.dir", f"{templates.dir} is not a directory")
    elif templates.dir is not None:
        for stray in sorted(Path(_resolve(r, templates.dir)).glob("*.j2")):
            r.problem(
                "templates.dir",
                f"{stray.name} is ignored: templates go in a set directory,"
                f" like {templates.dir}/default/{stray.name}",
            )
    raw_targets = r.section(
        top.get("targets"),
        "targets",
        tuple(str(k) for k in (top.get("targets") or {}) if isinstance(top.get("targets"), dict)),
    )
    apps = parse_apps(r, top.get("apps"))
    alertmanager = parse_alertmanager(r, top.get("alertmanager"))
    targets = {
        str(name): _target(r, str(name), body, templates, alertmanager)
        for name, body in raw_targets.items()
    }
    if not targets:
        r.problem("targets", "at least one target is required")
    config = Config(
        listen=_listen(r, top),
        tls=_tls(r, top.get("tls")),
        auth=_auth(r, top.get("auth")),
        templates=Templates(
            _resolve(r, templates.dir) if templates.dir else None,
            templates.language,
            templates.timezone,
        ),
        dedup=_dedup(r, top.get("dedup")),
        grouping=_grouping(r, top.get("grouping")),
        storage=_storage(r, top.get("storage")),
        delivery=_delivery(r, top.get("delivery")),
        targets=targets,
        routes=_routes(r, top.get("routes"), targets),
        apps=apps,
        alertmanager=alertmanager,
        source=source or "<memory>",
    )
    check_app_targets(r, targets, apps)
    if r.problems:
        raise ConfigError(r.problems, source, partial=config)
    return config


def _resolve(r: Reader, path: str) -> str:
    return path if os.path.isabs(path) else str(r.base_dir / path)


def _listen(r: Reader, top: dict[str, Any]) -> str:
    value = r.string(top, "listen", "", "0.0.0.0:8064") or "0.0.0.0:8064"
    if parse_listen(value) is None:
        r.problem("listen", f"must be HOST:PORT with a port from 1 to 65535, got {value!r}")
    return value


def parse_listen(value: str) -> tuple[str, int] | None:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]") or "0.0.0.0", int(port)


def _tls(r: Reader, data: Any) -> TLS | None:
    if data is None:
        return None
    d = r.section(data, "tls", TLS_KEYS)
    files = {k: r.string(d, k, "tls") for k in TLS_KEYS}
    for key in ("cert_file", "key_file"):
        if not files[key]:
            r.problem(f"tls.{key}", "is required when tls is set")
    for key, value in files.items():
        if value and not os.path.isfile(_resolve(r, value)):
            r.problem(f"tls.{key}", f"{value} does not exist")
    if not (files["cert_file"] and files["key_file"]):
        return None
    ca = files["client_ca_file"]
    return TLS(
        _resolve(r, files["cert_file"]),
        _resolve(r, files["key_file"]),
        _resolve(r, ca) if ca else None,
    )


def _auth(r: Reader, data: Any) -> Auth:
    d = r.section(data, "auth", AUTH_KEYS)
    basic = r.section(d.get("basic_auth"), "auth.basic_auth", BASIC_AUTH_KEYS)
    username = r.string(basic, "username", "auth.basic_auth")
    password = r.secret(basic, "password", "auth.basic_auth")
    if basic and (not username or password is None):
        r.problem("auth.basic_auth", "needs both username and password (or password_file)")
    return Auth(
        bearer_token=r.secret(d, "bearer_token", "auth"),
        basic_username=username if basic else None,
        basic_password=password,
    )


def _dedup(r: Reader, data: Any) -> Dedup:
    d = r.section(data, "dedup", DEDUP_KEYS)
    return Dedup(
        ttl=r.duration(d, "ttl", "dedup", 300.0, allow_zero=True),
        max_entries=int(r.number(d, "max_entries", "dedup", 100_000, integer=True)),
    )


def _grouping(r: Reader, data: Any) -> Grouping:
    d = r.section(data, "grouping", GROUPING_KEYS)
    return Grouping(
        wait=r.duration(d, "wait", "grouping", 0.0, allow_zero=True),
        max_alerts_per_card=int(r.number(d, "max_alerts_per_card", "grouping", 30, integer=True)),
    )


def _storage(r: Reader, data: Any) -> Storage:
    d = r.section(data, "storage", STORAGE_KEYS)
    redis_url = r.secret(d, "redis_url", "storage")
    if redis_url is not None and urlsplit(redis_url.get()).scheme not in (
        "redis",
        "rediss",
        "unix",
        "redis+sentinel",
    ):
        r.problem(
            "storage.redis_url", "must start with redis://, rediss://, unix:// or redis+sentinel://"
        )
    path = r.string(d, "path", "storage", "./amfeishu-outbox.db") or "./amfeishu-outbox.db"
    return Storage(path=path if path == ":memory:" else _resolve(r, path), redis_url=redis_url)


def _delivery(r: Reader, data: Any) -> Delivery:
    d = r.section(data, "delivery", DELIVERY_KEYS)
    return Delivery(
        timeout=r.duration(d, "timeout", "delivery", 10.0),
        max_retry_age=r.duration(d, "max_retry_age", "delivery", 3600.0),
    )


def _read_yaml(path: str | Path) -> Any:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read config: {exc.strerror or exc}"], source) from None
    except UnicodeDecodeError:
        raise ConfigError(["config is not UTF-8 text"], source) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError([f"{where}invalid YAML: {problem}"], source) from None


def merge_maps(base: Any, overlay: Any) -> Any:
    """Overlay wins; mappings are merged key by key, everything else is replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = merge_maps(base.get(key), value) if key in base else value
        return merged
    return overlay


def load_raw(paths: Sequence[str | Path] | str | Path) -> Any:
    """The merged YAML of one or more files (later files overlay earlier ones)."""
    files = [paths] if isinstance(paths, str | Path) else list(paths)
    data: Any = None
    for path in files:
        layer = _read_yaml(path)
        data = layer if data is None else merge_maps(data, layer)
    return data


def load_config(
    paths: Sequence[str | Path] | str | Path, *, env: Mapping[str, str] | None = None
) -> Config:
    """Read, overlay and validate one or more YAML config files."""
    files = [paths] if isinstance(paths, str | Path) else list(paths)
    data = load_raw(files)
    source = " + ".join(str(p) for p in files)
    return build_config(data, env=env, base_dir=Path(files[0]).resolve().parent, source=source)


def embedded_default(env: Mapping[str, str] | None = None) -> Config:
    """`serve` without --config: target `default` from FEISHU_WEBHOOK, else a preview."""
    env = os.environ if env is None else env
    target: dict[str, Any] = {}
    if env.get("FEISHU_WEBHOOK"):
        target["webhook"] = "${FEISHU_WEBHOOK}"
        if env.get("FEISHU_SECRET"):
            target["secret"] = "${FEISHU_SECRET}"
    data = {
        "listen": env.get("AMFEISHU_LISTEN", "0.0.0.0:8064"),
        "storage": {"path": env.get("AMFEISHU_STORAGE", "./amfeishu-outbox.db")},
        "targets": {"default": target},
        "routes": [{"targets": ["default"]}],
    }
    return build_config(data, env=env, source="<embedded default>")
