"""The chart's values schema describes exactly the config amfeishu reads.

`config` in helm/amfeishu/values.schema.json is amfeishu's config.yml: every key
the reader accepts (amfeishu/config/load.py, SECTIONS; the app sections are read
in amfeishu/config/apps.py) must be in it, so `helm install` does not refuse a
valid config, and no other, so a typo is refused before a pod ever starts. The
failures name the key.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
from types import ModuleType
from typing import Any

import pytest

import amfeishu.config
from amfeishu.config import apps, load
from amfeishu.config.types import ACTIONS
from tests.support.chart import CHART

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
CONFIG = SCHEMA["properties"]["config"]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def schema_sections(node: dict[str, Any], path: str = "") -> dict[str, dict[str, Any]]:
    """Section path (as in load.SECTIONS) → the schema of each object with fixed keys."""
    found: dict[str, dict[str, Any]] = {}
    for choice in node.get("anyOf", []):
        found |= schema_sections(choice, path)
    if "properties" in node:
        found[path] = node
        for key, child in node["properties"].items():
            found |= schema_sections(child, _join(path, key))
    if isinstance(node.get("additionalProperties"), dict):
        found |= schema_sections(node["additionalProperties"], _join(path, "*"))
    if isinstance(node.get("items"), dict):
        found |= schema_sections(node["items"], path + "[]")
    return found


SCHEMA_SECTIONS = schema_sections(CONFIG)
PATHS = sorted(set(SCHEMA_SECTIONS) | set(load.SECTIONS))


def _shown(path: str) -> str:
    return path or "(top level)"


@pytest.mark.parametrize("path", PATHS, ids=_shown)
def test_schema_has_every_key_the_reader_accepts(path: str) -> None:
    assert path in SCHEMA_SECTIONS, (
        f"config section {_shown(path)} is read by amfeishu/config/load.py"
        " but values.schema.json does not describe it"
    )
    assert path in load.SECTIONS, (
        f"config section {_shown(path)} is in values.schema.json"
        " but amfeishu/config/load.py reads no such section"
    )
    schema_keys = set(SCHEMA_SECTIONS[path]["properties"])
    reader_keys = set(load.SECTIONS[path])
    missing = [_join(path, k) for k in sorted(reader_keys - schema_keys)]
    extra = [_join(path, k) for k in sorted(schema_keys - reader_keys)]
    assert missing == [], f"amfeishu reads config keys values.schema.json lacks: {missing}"
    assert extra == [], f"values.schema.json allows config keys amfeishu rejects: {extra}"


@pytest.mark.parametrize("path", sorted(SCHEMA_SECTIONS), ids=_shown)
def test_schema_refuses_unknown_keys_like_the_reader(path: str) -> None:
    assert SCHEMA_SECTIONS[path].get("additionalProperties") is False, (
        f"values.schema.json: config section {_shown(path)} lets unknown keys through"
    )


def test_target_names_follow_the_reader() -> None:
    names = CONFIG["properties"]["targets"]["propertyNames"]["pattern"]
    assert names == load._TARGET_NAME.pattern


def test_app_names_follow_the_reader() -> None:
    names = CONFIG["properties"]["apps"]["propertyNames"]["pattern"]
    assert names == apps._APP_NAME.pattern


def test_actions_are_the_reader_s() -> None:
    target = CONFIG["properties"]["targets"]["additionalProperties"]["anyOf"][0]
    pattern = target["properties"]["actions"]["items"]["pattern"]
    assert pattern == "^(" + "|".join(ACTIONS) + r"|\$\{.+\})$"


def config_modules() -> list[ModuleType]:
    """Every module of amfeishu/config (load.py, apps.py, …), found, not listed by hand."""
    package = amfeishu.config
    return [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
    ]


def section_calls(module: ModuleType) -> list[ast.Call]:
    """The `….section(data, path, keys)` calls in a module's source."""
    return [
        node
        for node in ast.walk(ast.parse(inspect.getsource(module)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "section"
    ]


READERS = [m for m in config_modules() if section_calls(m)]


def test_the_section_readers_are_found() -> None:
    assert {load, apps} <= set(READERS), [m.__name__ for m in READERS]


def test_the_reader_takes_every_section_s_keys_from_sections() -> None:
    """SECTIONS is the whole truth: no `r.section` call lists its keys inline, and every
    section in SECTIONS is read by some call (in load.py or apps.py)."""
    paths_of: dict[int, set[str]] = {}  # by identity: two sections may share equal tuples
    for path, keys in load.SECTIONS.items():
        paths_of.setdefault(id(keys), set()).add(path)
    read: set[str] = set()
    for module in READERS:
        where = f"amfeishu/config/{module.__name__.rsplit('.', 1)[-1]}.py"
        for call in section_calls(module):
            path, keys = call.args[1], call.args[2]
            if isinstance(path, ast.Constant) and path.value == "targets":
                continue  # the map of target names: any name _TARGET_NAME allows
            value = vars(module).get(keys.id) if isinstance(keys, ast.Name) else None
            assert id(value) in paths_of, (
                f"{where} line {call.lineno}: r.section takes keys that are not"
                " one of SECTIONS' constants; add them to SECTIONS"
            )
            read |= paths_of[id(value)]
    unread = sorted(set(load.SECTIONS) - read, key=_shown)
    assert unread == [], f"SECTIONS lists sections no r.section call reads: {unread}"
