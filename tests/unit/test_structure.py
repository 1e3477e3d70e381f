"""The house: every import points down the layers below, and no module outgrows one concept.

A module may import only modules of a lower layer (later in LAYERS), never one
of its own layer or above: that rules out import circles too. A new module
must be given its layer here, which is the moment to ask where it belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "amfeishu"
MAX_LINES = 500
LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"serving"},
    {"ui"},
    {"app"},
    {"receiver", "callbacks"},
    {"edge", "service"},
    {"watch", "dispatcher"},
    {"worker"},
    {"storm_mode"},
    {"generation", "sinks", "alertmanager"},
    {"tls", "cards.plan", "cards.html"},
    {"cards.renderer"},
    {"cards.safe", "cards.context", "cards.jinja", "cards.sets", "cards.actions"},
    {"cards.storm"},
    {"cards.facts", "cards.checks"},
    {"cards.text"},
    {"backend.open"},
    {"backend.redis_outbox", "backend.redis_cards"},
    {"backend.redis_leases", "backend.redis_limits", "backend.sqlite", "backend.memory"},
    {"backend.cards"},
    {"backend.sqlite_writer"},
    {"backend.sqlite_thread"},
    {"backend.redis_link"},
    {"backend.base"},
    {"router", "events", "dedup", "ratelimit", "config.load", "config.machine"},
    {"config.apps"},
    {"config.redact", "config.reader"},
    {"config.types", "feishu.webhook", "feishu.openapi", "feishu.crypto"},
    {"feishu.answers", "metrics", "logs", "models", "matchers"},
    {"matcher_syntax"},
    {"", "backend", "cards", "config", "feishu", "samples", "static"},  # packages
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every package module this one imports, at the top, in functions or for types."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for full in names:
            if full != "amfeishu" and not full.startswith("amfeishu."):
                continue
            inner = full.removeprefix("amfeishu").removeprefix(".")
            if inner in known:
                found.add(inner)
                continue
            parent = inner.rpartition(".")[0]
            if parent in known or (full == f"amfeishu.{inner}" and "." not in inner):
                found.add(parent)
    found.discard(name)
    return found


def _layer(name: str) -> int:
    for index, layer in enumerate(LAYERS):
        if name in layer:
            return index
    raise AssertionError(f"amfeishu.{name} has no layer in tests/unit/test_structure.py")


def test_every_module_has_a_layer() -> None:
    for name in _modules():
        _layer(name)
    placed = {name for layer in LAYERS for name in layer}
    assert placed <= set(_modules()), f"layers name missing modules: {placed - set(_modules())}"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_imports_point_down(name: str) -> None:
    known = _modules()
    upward = [
        other
        for other in sorted(_imports(name, known[name], known))
        if _layer(other) <= _layer(name)
    ]
    assert not upward, f"amfeishu.{name} imports {upward}: not below it"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_size(name: str) -> None:
    lines = len(_modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"amfeishu.{name} has {lines} lines: more than one concept?"
