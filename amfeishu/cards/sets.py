"""Template sets: the built-ins overlaid by the user's dir, file by file; the file a
notification's card is rendered from (docs/templates.md, "Template sets").

A user dir is read once, when the loader is built: a renderer keeps the
templates it was checked with, and files edited on disk take effect by a
reload, never half-way.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, TemplateNotFound
from jinja2.loaders import split_template_path

from amfeishu.config.types import Target
from amfeishu.models import SEVERITY_ORDER

CARD_FILES = (
    "firing-critical.json.j2",
    "firing-warning.json.j2",
    "firing-info.json.j2",
    "resolved.json.j2",
    "default.json.j2",
)
STORM_FILE = "storm.json.j2"
SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.j2$")


def files_for(target: Target) -> tuple[str, ...]:
    """The files a target may render from; a card target picks one by kind (card_file)."""
    if target.card_template_id:
        return ("cardkit.json.j2",)
    if target.msg_type in ("text", "post"):
        return (f"{target.msg_type}.json.j2",)
    return CARD_FILES


def digests(target: Target) -> bool:
    """Whether a storm becomes digest cards for this target: a webhook's interactive cards
    from its own templates (an app target keeps one card per alert group, updated)."""
    return target.msg_type == "interactive" and not target.card_template_id and target.app is None


def card_file(kind: str) -> str:
    """The card file for a kind (facts.kind_of): firing-<severity>, resolved or default."""
    if kind == "resolved":
        return "resolved.json.j2"
    return f"firing-{kind}.json.j2" if kind in SEVERITY_ORDER else "default.json.j2"


class SetLoader(BaseLoader):
    """'<set>/<file>' from the user dir, then the built-ins, then the default set."""

    def __init__(self, user_dir: Path | None, builtin: Traversable) -> None:
        self.user_dir = user_dir
        self.builtin = builtin
        self.unreadable: list[str] = []
        self.user = _read_user_dir(user_dir, self.unreadable)  # '<set>/<path>' → (text, shown)
        self.user_sets = {name.split("/", 1)[0] for name in self.user}
        if user_dir is not None and user_dir.is_dir():  # a set dir without files is a set too
            self.user_sets |= {p.name for p in user_dir.iterdir() if p.is_dir()}

    def has_set(self, set_name: str) -> bool:
        return set_name in self.user_sets or self.builtin.joinpath(set_name).is_dir()

    def files(self, set_name: str) -> list[str]:
        names = {
            n.split("/", 1)[1]
            for n in self.user
            if n.count("/") == 1 and n.startswith(set_name + "/")
        }
        if self.builtin.joinpath(set_name).is_dir():
            items = self.builtin.joinpath(set_name).iterdir()
            names |= {p.name for p in items if p.name.endswith(".j2")}
        return sorted(names)

    def find(self, name: str, *, inherit: bool = True) -> tuple[str, str] | None:
        """(text, name shown in messages) for '<set>/<file>', or None."""
        try:
            set_name, *rest = split_template_path(name)
        except TemplateNotFound:
            return None
        if not rest:
            return None
        sets = [set_name] + (["default"] if inherit and set_name != "default" else [])
        for s in sets:
            user = self.user.get("/".join([s, *rest]))
            if user is not None:
                return user
            item = self.builtin.joinpath(s, *rest)
            if item.is_file():
                return item.read_text("utf-8"), "templates/" + "/".join([s, *rest])
        return None

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Any]:
        found = self.find(template)
        if found is None:
            raise TemplateNotFound(template)
        return found[0], found[1], lambda: True


def _read_user_dir(user_dir: Path | None, unreadable: list[str]) -> dict[str, tuple[str, str]]:
    """Every readable *.j2 in the sets of user_dir, through symlinks (a mounted ConfigMap)."""
    out: dict[str, tuple[str, str]] = {}
    if user_dir is None or not user_dir.is_dir():
        return out
    seen: set[str] = set()
    for root, dirs, names in os.walk(user_dir, followlinks=True):
        if os.path.realpath(root) in seen:  # a symlink loop
            dirs[:] = []
            continue
        seen.add(os.path.realpath(root))
        dirs[:] = [d for d in dirs if not d.startswith("..")]  # ConfigMap internals
        rel = Path(root).relative_to(user_dir)
        if rel == Path("."):
            continue  # files beside the sets belong to no set
        for name in names:
            if name.endswith(".j2") and not name.startswith(".."):
                path = Path(root, name)
                try:
                    out[(rel / name).as_posix()] = (path.read_text("utf-8"), str(path))
                except (OSError, UnicodeDecodeError) as exc:
                    unreadable.append(f"{path}: cannot read: {exc}")
    return out


class OverlayLoader(BaseLoader):
    """Another loader with some '<set>/<file>' names replaced by given text."""

    def __init__(self, base: SetLoader, sources: dict[str, str]) -> None:
        self.base = base
        self.sources = sources

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Any]:
        if template in self.sources:
            return self.sources[template], template, lambda: True
        return self.base.get_source(environment, template)


def builtin_root() -> Traversable:
    try:  # installed: the wheel maps templates/ to the package amfeishu.templates
        return resources.files("amfeishu.templates")
    except ModuleNotFoundError:  # a source checkout
        return Path(__file__).resolve().parents[2] / "templates"
