"""The Feishu app part of the config: `apps`, `alertmanager`, and the keys of app targets.

README.md, "Feishu app mode", shows them in use. Every problem is reported
with its path, like the rest of the config (config/load.py).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from amfeishu.config.reader import Reader, join, kind, parse_duration
from amfeishu.config.types import (
    ACTIONS,
    APP_DOMAINS,
    DEFAULT_SILENCE_DURATIONS,
    RECEIVE_ID_TYPES,
    AlertmanagerAPI,
    App,
    AppDelivery,
    Secret,
    Target,
)
from amfeishu.feishu.openapi import base_url, validate_domain

APP_KEYS = (
    "app_id",
    "app_secret",
    "app_secret_file",
    "domain",
    "encrypt_key",
    "encrypt_key_file",
    "verification_token",
    "verification_token_file",
)
ALERTMANAGER_KEYS = ("url", "bearer_token", "bearer_token_file", "basic_auth")
BASIC_AUTH_KEYS = ("username", "password", "password_file")
APP_TARGET_KEYS = ("app", *RECEIVE_ID_TYPES, "update_in_place", "actions", "silence_durations")
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_APP_ID = re.compile(r"cli_[A-Za-z0-9]+")
_ID_LOOKS = {
    "chat_id": "oc_…",
    "open_id": "ou_…",
    "user_id": "letters, digits, '_' or '-'",
    "union_id": "on_…",
    "email": "name@example.com",
}


def parse_apps(r: Reader, data: Any) -> dict[str, App]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        r.problem("apps", f"must be a mapping of app names, got {kind(data)}")
        return {}
    apps = {}
    for name, body in data.items():
        path = f"apps.{name}"
        if not _APP_NAME.match(str(name)):
            r.problem(path, "name must be letters, digits, '_', '.', '-' (it is used in URLs)")
        d = r.section(body, path, APP_KEYS)
        app_id = r.string(d, "app_id", path) or ""
        if not app_id:
            r.problem(join(path, "app_id"), "is required (cli_… from the developer console)")
        elif not _APP_ID.fullmatch(app_id):
            r.problem(join(path, "app_id"), f"must look like cli_a1b2c3d4e5f6, got {app_id!r:.40}")
        known = len(r.problems)
        secret = r.secret(d, "app_secret", path)
        if secret is None and len(r.problems) == known:  # absent or null, not reported yet
            r.problem(join(path, "app_secret"), "is required (or app_secret_file)")
        apps[str(name)] = App(
            name=str(name),
            app_id=app_id,
            app_secret=secret if secret is not None else Secret(""),  # reported above
            base_url=_domain(r, d, path),
            encrypt_key=r.secret(d, "encrypt_key", path),
            verification_token=r.secret(d, "verification_token", path),
        )
    return apps


def _domain(r: Reader, d: dict[str, Any], path: str) -> str:
    value = r.string(d, "domain", path, "feishu") or "feishu"
    if value in APP_DOMAINS:
        return APP_DOMAINS[value]
    # the client's own rule (a path or credentials in the URL would fail every send)
    problem = validate_domain(value)
    if problem is None:
        return base_url(value)
    r.problem(join(path, "domain"), problem)
    return APP_DOMAINS["feishu"]


def parse_alertmanager(r: Reader, data: Any) -> AlertmanagerAPI | None:
    if data is None:
        return None
    d = r.section(data, "alertmanager", ALERTMANAGER_KEYS)
    url = r.string(d, "url", "alertmanager") or ""
    parts = urlsplit(url)
    if not url:
        r.problem("alertmanager.url", "is required (like http://alertmanager:9093)")
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.problem("alertmanager.url", f"must be an http(s) URL with a host, got {url!r:.60}")
        return None
    basic = r.section(d.get("basic_auth"), "alertmanager.basic_auth", BASIC_AUTH_KEYS)
    username = r.string(basic, "username", "alertmanager.basic_auth")
    password = r.secret(basic, "password", "alertmanager.basic_auth")
    if basic and (not username or password is None):
        r.problem("alertmanager.basic_auth", "needs both username and password (or password_file)")
    token = r.secret(d, "bearer_token", "alertmanager")
    if token is not None and basic:
        r.problem("alertmanager", "set bearer_token or basic_auth, not both")
    return AlertmanagerAPI(url.rstrip("/"), token, username if basic else None, password)


def parse_app_delivery(
    r: Reader, d: dict[str, Any], path: str, alertmanager: AlertmanagerAPI | None
) -> AppDelivery | None:
    """The app keys of a target (None for a webhook or preview target)."""
    if "app" not in d:
        for key in APP_TARGET_KEYS:
            if key in d:
                r.problem(join(path, key), "only app targets take this key (set app: too)")
        return None
    app = r.string(d, "app", path) or ""
    if "webhook" in d or "webhook_file" in d:
        r.problem(path, "set webhook or app, not both: a target has one receiver")
    given = [k for k in RECEIVE_ID_TYPES if k in d]
    if len(given) != 1:
        names = ", ".join(RECEIVE_ID_TYPES)
        r.problem(path, f"an app target needs exactly one of {names}" + _got(given))
    id_type = given[0] if given else "chat_id"
    receive_id = (r.string(d, id_type, path) or "") if given else ""
    if given and not RECEIVE_ID_TYPES[id_type].fullmatch(receive_id):
        r.problem(
            join(path, id_type), f"must look like {_ID_LOOKS[id_type]}, got {receive_id!r:.60}"
        )
    default_actions = ACTIONS if alertmanager is not None else ("ack",)
    actions = _list(r, d, "actions", path, default_actions)
    for i, action in enumerate(actions):
        if action not in ACTIONS:
            r.problem(
                f"{path}.actions[{i}]", f"must be one of {', '.join(ACTIONS)}, got {action!r}"
            )
    if "silence" in actions and alertmanager is None:
        r.problem(join(path, "actions"), "silence needs alertmanager.url (where silences go)")
    durations = _list(r, d, "silence_durations", path, DEFAULT_SILENCE_DURATIONS)
    for i, text in enumerate(durations):
        seconds = parse_duration(text)
        if seconds is None or seconds <= 0:
            r.problem(f"{path}.silence_durations[{i}]", f"must be a duration like 1h, got {text!r}")
    if not durations and "silence" in actions:
        r.problem(join(path, "silence_durations"), "needs at least one duration for silence")
    if d.get("msg_type", "interactive") != "interactive":
        r.problem(join(path, "msg_type"), "app targets send cards: leave it interactive")
    if "card_template_id" in d:
        r.problem(join(path, "card_template_id"), "is for webhook targets; app cards use templates")
    return AppDelivery(
        app=app,
        receive_id_type=id_type,
        receive_id=receive_id,
        update_in_place=r.boolean(d, "update_in_place", path, True),
        actions=tuple(dict.fromkeys(actions)),
        silence_durations=tuple(dict.fromkeys(durations)),
    )


def check_app_targets(r: Reader, targets: dict[str, Target], apps: dict[str, App]) -> None:
    """What needs the whole config: the app a target names exists and can verify clicks."""
    for target in targets.values():
        if target.app is None:
            continue
        path = f"targets.{target.name}.app"
        app = apps.get(target.app.app)
        if app is None:
            known = ", ".join(sorted(apps)) or "none; define it under apps"
            r.problem(path, f"unknown app {target.app.app!r} (known: {known})")
        elif target.app.actions and app.verification_token is None:
            r.problem(
                f"apps.{app.name}.verification_token",
                f"is required: target {target.name} has buttons that call back"
                f" ({', '.join(target.app.actions)}); every click's token is checked against it",
            )


def _list(
    r: Reader, d: dict[str, Any], key: str, path: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    value = d.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        r.problem(join(path, key), f"must be a list, got {kind(value)}")
        return default
    return tuple(r.expand(str(v), f"{path}.{key}[{i}]") for i, v in enumerate(value))


def _got(given: list[str]) -> str:
    return f", got {' and '.join(given)}" if given else ""
