"""Jinja2 card templates → Feishu messages, checked, with a safe fallback card.

A template set is a directory of ``*.json.j2`` files (DESIGN §5). For a card
target the file is ``resolved.json.j2`` when no alert fires, else
``firing-<severity>.json.j2`` (critical > warning > info), else
``default.json.j2``; text and post targets use ``text.json.j2`` /
``post.json.j2``, CardKit targets (``card_template_id``) ``cardkit.json.j2``,
whose output is the template's variables. Files in the user's templates dir
override built-ins file by file (``<dir>/<set>/<file>``); a set may be new,
and a file it lacks is taken from the ``default`` set. In templates,
``{% include "x.j2" %}`` / ``{% import "x.j2" %}`` name a file of the same
set; ``"<set>/<file>"`` names one of another set.

Escaping. Output is JSON, so every ``{{ … }}`` is JSON-escaped when printed
and can sit inside a JSON string as it is: ``"content": "{{ alert.name }}"``.
What is already JSON passes through unchanged: macro output, ``{% set x %}…
{% endset %}`` blocks, and ``{{ value | json }}`` (a whole JSON value, e.g.
``"n": {{ alerts | length }}`` or ``"text": {{ lines | join("\\n") | json }}``).
Build strings with expressions (``~``, ``join``) and print them once; do not
concatenate macro output with ``~``. Label and annotation values that go into
a markdown element must pass through ``| md``. An undefined name fails the
render when printed, iterated or measured; it is falsy in ``{% if %}`` and
takes ``| default(…)``. Templates typed into the playground (render_source)
run in Jinja's sandbox; configured ones are as trusted as the config.

Checks. The output must be one message: ``{"msg_type": "interactive",
"card": {…}}`` with ``schema`` "2.0", ``header.template`` one of Feishu's 13
colours, a ``header.title``, ``body.elements`` a list, every ``default_url``
http(s) and no JSON 1.0 parts (``note``, ``action``, top-level ``elements``,
``wide_screen_mode``); or a text / post message. A target's keyword is put in
front of the title (or text) when the template left it out. A template that
fails in any way yields the safe message, built in Python, and
``Rendered.error`` says why, naming the file and line.

Template context:

* ``status``, ``receiver``, ``groupLabels``, ``commonLabels``,
  ``commonAnnotations``, ``externalURL``, ``groupKey``, ``truncatedAlerts``:
  the Alertmanager payload's fields.
* ``alerts``: the alerts as Alertmanager's dicts (``status``, ``labels``,
  ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``,
  ``fingerprint``) plus: ``name``, ``severity`` (lower case), ``firing``
  (bool), ``summary``, ``description`` (annotation ``description`` or
  ``message``), ``starts_at_local``, ``ends_at_local`` ('' while firing),
  ``duration`` (firing: since start; resolved: how long it lasted),
  ``silence_url``, ``source_url`` / ``runbook_url`` / ``dashboard_url`` (the
  http(s) ``generatorURL`` / annotations, else ''), ``key_labels`` (instance,
  pod, job… minus those in the header subtitle), ``links`` (this alert's
  runbook/dashboard/source/silence URLs that differ from the card's
  ``links``; '' otherwise), ``description_text`` (``description`` | plain,
  truncated to 1000 characters when the card has one alert, else 300; ''
  when it repeats the summary).
* ``firing``, ``resolved``: the alerts split by status.
* ``severity``: highest of critical > warning > info among firing alerts (all
  alerts when none fires), else the first severity label seen, else ''.
* ``kind``: the file chosen: critical | warning | info | resolved | default.
* ``alertname``: the group's alert name, or the distinct names joined.
* ``title``: "[FIRING:2] HighCPU" / "[告警:2] HighCPU" / "[RESOLVED] …" /
  "[已恢复] …", prefixed with the target's keyword when it has one.
* ``subtitle_labels`` (dict) and ``subtitle`` ("k=v · k=v"): groupLabels but
  alertname, else the key labels all alerts share.
* ``links``: card-level http(s) URLs, '' when absent: ``runbook``,
  ``dashboard``, ``source`` (when every alert has the same one), ``silence``
  (the firing alerts' common labels), ``alertmanager``.
* ``target``: ``name``, ``language``, ``timezone``, ``keyword``, ``msg_type``.
* ``language``: "zh" or "en". A card for a target with language "auto" is
  rendered in both and gets ``i18n_content: {"zh_cn": …, "en_us": …}`` where they
  differ; a post gets ``zh_cn`` and ``en_us``; text and CardKit use zh.
* ``compact`` (bool): one line per alert (digest cards in storms).
* ``omitted`` (int): alerts left out by the size guard ("N more in Alertmanager").
* ``mentions_md``: ready "<at id=…></at>" markup; ``mention_ids``: the ids
  ("all" or open_ids) — from the target's ``mentions[kind]`` and, for firing
  alerts, the ``mention_label`` label/annotation (validated ``ou_…`` only).
* ``extra``: extra fields of the notification (plain events).
* ``now``: the render time (aware datetime, UTC).
* ``t(key, **values)``: the zh/en string for key (``cardtext.STRINGS``).
* ``alert_md(a)``: the markdown of an alert of ``alerts`` in the built-in card
  (name · summary, key labels, start/end time and duration, its own links),
  in the rendering's language; ``alert_md_line(a)``: its compact line
  ("- **name** · first key label · duration"). Both are md-escaped already.
* ``silence_url(alert_or_labels)``, ``alertmanager_url`` (a string),
  ``since(time)`` ("5m", "2h3m", "1d4h" until now), ``local_time(time)``
  ("2026-11-28 21:46:21 CST" in the target's timezone); times are RFC 3339
  strings or datetimes, '' for Go's zero time.

Filters: ``md`` (markdown/HTML/<at> shown literally), ``plain`` (an <at> tag
in text/post/plain_text mentions nobody), ``oneline`` (whitespace and
newlines as single spaces), ``truncate(n)`` (characters, adds
"…"; safe after ``md``), ``json``, ``url`` (http(s) or ''), ``mdurl`` (url
for a ``[t](url)``), ``e`` (JSON-escape now, as printing would).
"""

from __future__ import annotations

import json
import os
import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, Environment, TemplateNotFound, TemplateSyntaxError, Undefined, nodes
from jinja2.compiler import CodeGenerator
from jinja2.loaders import split_template_path
from jinja2.runtime import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from amfeishu import cardhelpers as h
from amfeishu import cardtext as ct
from amfeishu.models import Notification, parse_notification
from amfeishu.settings import Target

CARD_FILES = (
    "firing-critical.json.j2",
    "firing-warning.json.j2",
    "firing-info.json.j2",
    "resolved.json.j2",
    "default.json.j2",
)
SAFE = "builtin:safe"
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.j2$")
_LANGUAGES = ("zh", "en", "auto")


class RenderError(Exception):
    """A template produced no valid message; the text names the file."""


@dataclass(frozen=True)
class Rendered:
    message: dict[str, Any]
    template: str  # "<set>/<file>" or "builtin:safe"
    error: str | None  # why the template failed and the safe message went out


class Renderer:
    def __init__(
        self,
        user_dir: str | Path | None = None,
        *,
        language: str = "zh",
        timezone: str = "Asia/Shanghai",
    ) -> None:
        self.user_dir = Path(user_dir) if user_dir else None
        self.language = language if language in _LANGUAGES else "zh"
        self.timezone = timezone
        self._loader = _SetLoader(self.user_dir, _builtin_root())
        self._env = _environment(self._loader)
        self._resolved: dict[tuple[str, str], str] = {}  # the loader is a snapshot

    # ---- public API -----------------------------------------------------

    def render(
        self,
        n: Notification,
        target: Target,
        *,
        compact: bool = False,
        omitted: int = 0,
        now: datetime | None = None,
    ) -> Rendered:
        """The message for target; the safe message (with error set) if the template fails."""
        now = now or datetime.now(UTC)
        name = ""
        try:
            name = self._select(n, target)
            message = self._render_strict(name, n, target, compact, omitted, now)
        except Exception as exc:  # any template bug: the alert still goes out
            reason = self._describe(exc, name)
            return Rendered(self._safe(n, target, compact, omitted, reason, now), SAFE, reason)
        return Rendered(message, name, None)

    def safe_message(
        self,
        n: Notification,
        target: Target,
        *,
        compact: bool = False,
        omitted: int = 0,
        reason: str = "",
    ) -> dict[str, Any]:
        """A message built in Python, without templates: it cannot fail."""
        return self._safe(n, target, compact, omitted, reason, datetime.now(UTC))

    def check(self, targets: Iterable[Target]) -> list[str]:
        """Problems of every template the targets may use, tried on the bundled samples."""
        problems = self._user_dir_problems()
        samples = _samples()
        tried: set[tuple[Any, ...]] = set()
        for target in targets:
            files = _files_for(target)
            for file in files:
                try:
                    name = self._resolve(target.template, file)
                except RenderError as exc:
                    problems.append(f"target {target.name}: {exc}")
                    break
                key = (name, self._language(target), target.msg_type, bool(target.card_template_id))
                if key not in tried:
                    tried.add(key)
                    problem = self._trial(name, target, samples)
                    if problem:
                        problems.append(problem)
        return list(dict.fromkeys(problems))

    def render_source(
        self,
        n: Notification,
        target: Target,
        file: str,
        source: str,
        *,
        compact: bool = False,
        omitted: int = 0,
        now: datetime | None = None,
    ) -> Rendered:
        """render() with file of the target's set replaced by source; nothing is saved.

        An edited card/text/post file (``*.json.j2``) is rendered itself; an
        edited helper (``_macros.j2``) is used by the file render() would pick.
        Same sandbox, escaping and checks as render(); errors name the line.
        """
        now = now or datetime.now(UTC)
        name = ""
        try:
            if not _FILE_NAME.match(file or ""):
                raise RenderError(f"template file must be a name like x.json.j2, got {file!r:.60}")
            if not self._set_exists(target.template):
                raise RenderError(f"template set {target.template!r} not found")
            edited = f"{target.template}/{file}"
            env = _environment(_OverlayLoader(self._loader, {edited: source}), sandboxed=True)
            name = edited if file.endswith(".json.j2") else self._select(n, target)
            message = self._render_strict(name, n, target, compact, omitted, now, env)
        except Exception as exc:  # reported like render() does, with the safe message
            reason = self._describe(exc, name)
            return Rendered(self._safe(n, target, compact, omitted, reason, now), SAFE, reason)
        return Rendered(message, name, None)

    def template_source(self, set_name: str, file: str) -> tuple[str, str] | None:
        """(text, where it comes from) of a file as the set sees it, or None."""
        if not self._set_exists(set_name) or not _FILE_NAME.match(file or ""):
            return None
        return self._loader.find(f"{set_name}/{file}")

    def template_names(self, set_name: str) -> list[str]:
        """Every *.j2 file the set can use (its own and those taken from default), sorted."""
        if not self._set_exists(set_name):
            return []
        names = set(self._loader.files(set_name))
        if set_name != "default":
            names |= set(self._loader.files("default"))
        return sorted(names)

    # ---- selection --------------------------------------------------------

    def _set_exists(self, set_name: str) -> bool:
        return bool(_SET_NAME.match(set_name or "")) and self._loader.has_set(set_name)

    def _select(self, n: Notification, target: Target) -> str:
        files = _files_for(target)
        if len(files) > 1:  # a card target: the file by kind
            kind = h.kind_of(n)[0]
            files = ("resolved.json.j2",) if kind == "resolved" else (_card_file(kind),)
        return self._resolve(target.template, files[0])

    def _resolve(self, set_name: str, file: str) -> str:
        """'<set>/<file>' to load for file, after the fallbacks of DESIGN §5."""
        name = self._resolved.get((set_name, file))
        if name is None:  # looked up once: it reads and stats files
            name = self._resolved[set_name, file] = self._lookup(set_name, file)
        return name

    def _lookup(self, set_name: str, file: str) -> str:
        if not self._set_exists(set_name):
            raise RenderError(f"template set {set_name!r} not found")
        chain = [file]
        if file in CARD_FILES and file != "default.json.j2":
            chain.append("default.json.j2")
        for inherit in (False, True):  # the set's own files first, then default's
            for candidate in chain:
                if self._loader.find(f"{set_name}/{candidate}", inherit=inherit):
                    return f"{set_name}/{candidate}"
        raise RenderError(f"template set {set_name!r} has no {file}")

    def _language(self, target: Target) -> str:
        return target.language if target.language in _LANGUAGES else self.language

    # ---- rendering ----------------------------------------------------------

    def _render_strict(
        self,
        name: str,
        n: Notification,
        target: Target,
        compact: bool,
        omitted: int,
        now: datetime,
        env: Environment | None = None,
    ) -> dict[str, Any]:
        template = (env or self._env).get_template(name)
        origin = template.filename or name
        base = h.context(n, target, self._language(target), self._tz(target), compact, omitted, now)
        file = name.rsplit("/", 1)[-1]

        def once(language: str) -> Any:
            ctx = dict(base, **h.for_language(n, language, target.keyword))
            return _parse(template.render(ctx), origin)

        language = self._language(target)
        if language != "auto" or file in ("text.json.j2", "cardkit.json.j2"):
            message = once("en" if language == "en" else "zh")
        elif file == "post.json.j2":
            message = h.merge_posts(once("zh"), once("en"))
        else:
            message = h.merge_i18n(once("zh"), once("en"))
        if file == "cardkit.json.j2":
            message = _cardkit(message, target, origin)
        problem = h.card_problem(message)
        if problem:
            raise RenderError(f"{origin}: {problem}")
        return h.ensure_keyword(message, target.keyword)

    def _tz(self, target: Target) -> Any:
        return ct.zone(target.timezone or self.timezone)

    def _safe(
        self,
        n: Notification,
        target: Target,
        compact: bool,
        omitted: int,
        reason: str,
        now: datetime,
    ) -> dict[str, Any]:
        language, tz = self._language(target), self._tz(target)
        return h.safe_message(n, target, language, tz, compact, omitted, reason, now)

    def _describe(self, exc: BaseException, name: str) -> str:
        if isinstance(exc, TemplateSyntaxError):
            return f"{exc.filename or name}:{exc.lineno}: {exc.message}"
        if isinstance(exc, RenderError):
            return str(exc)
        # Jinja rewrites tracebacks so template frames carry the file and line.
        frames = [
            f"{frame.f_code.co_filename}:{line}"
            for frame, line in traceback.walk_tb(exc.__traceback__)
            if frame.f_code.co_filename.endswith(".j2")
        ]
        where = frames[-1] if frames else name or "template"
        if isinstance(exc, TemplateNotFound):
            return f"{where}: template {exc.name!r} not found"
        if type(exc).__module__.startswith("jinja2"):
            return f"{where}: {exc}"
        return f"{where}: {type(exc).__name__}: {exc}"

    def _trial(self, name: str, target: Target, samples: tuple[Notification, ...]) -> str | None:
        now = datetime.now(UTC)
        for n in samples:
            for compact, omitted in ((False, 0), (True, 3)):
                try:
                    self._render_strict(name, n, target, compact, omitted, now)
                except Exception as exc:  # reported, not raised: check lists every problem
                    return self._describe(exc, name)
        return None

    def _user_dir_problems(self) -> list[str]:
        if self.user_dir is None:
            return []
        if not self.user_dir.is_dir():
            return [f"{self.user_dir}: templates dir not found"]
        problems = list(self._loader.unreadable)
        for text, shown in sorted(self._loader.user.values(), key=lambda item: item[1]):
            try:
                self._env.parse(text, Path(shown).name, shown)
            except TemplateSyntaxError as exc:
                problems.append(f"{shown}:{exc.lineno}: {exc.message}")
        return problems


# ---- Jinja environment ------------------------------------------------------


class _CodeGenerator(CodeGenerator):
    # Jinja folds constant {{ "a<b" }} at compile time and HTML-escapes it
    # under autoescape; evaluating them at run time sends them through
    # _finalize like every other value.
    def _output_child_to_const(self, node: nodes.Expr, frame: Any, finalize: Any) -> str:
        if not isinstance(node, nodes.TemplateData):
            raise nodes.Impossible()
        return super()._output_child_to_const(node, frame, finalize)

    # Under autoescape Jinja prints escape(finalize(value)); _finalize returns
    # Markup already, which escape() would only copy: print finalize(value).
    def _output_child_pre(self, node: nodes.Expr, frame: Any, finalize: Any) -> None:
        if frame.eval_ctx.autoescape and not frame.eval_ctx.volatile and finalize.src:
            self.write("(" + finalize.src)
        else:
            super()._output_child_pre(node, frame, finalize)


class _SetPaths:
    def join_path(self, template: str, parent: str) -> str:
        """A bare file name in an include/import is a file of the including set."""
        if "/" in template or "/" not in parent:
            return template
        return parent.split("/", 1)[0] + "/" + template


class _Environment(_SetPaths, Environment):
    """Configured templates: written by the operator, as trusted as the config."""

    code_generator_class = _CodeGenerator


class _SandboxedEnvironment(_SetPaths, SandboxedEnvironment):
    """Templates typed into the playground: sandboxed (no attribute games)."""

    code_generator_class = _CodeGenerator


class _Undefined(StrictUndefined):
    """Fails when printed, iterated or measured; falsy and comparable otherwise."""

    __slots__ = ()
    __eq__ = Undefined.__eq__
    __ne__ = Undefined.__ne__
    __hash__ = Undefined.__hash__

    def __bool__(self) -> bool:
        return False


def _finalize(value: Any) -> Markup:
    # Autoescape makes macro output Markup; Markup means "already JSON text".
    # Everything else is JSON-escaped exactly once here. (str.__new__ skips
    # Markup's own __new__: this runs for every {{ … }} printed.)
    if type(value) is str:
        return _markup(ct.json_escape(value))
    if hasattr(value, "__html__"):
        return Markup(value.__html__())
    if value is None:
        return _markup("")
    return _markup(ct.json_escape(value))


def _markup(text: str) -> Markup:
    return str.__new__(Markup, text)


def _json_filter(value: Any) -> Markup:
    return Markup(json.dumps(value, ensure_ascii=False, default=str))


def _escape_filter(value: Any) -> Markup:
    return value if isinstance(value, Markup) else Markup(ct.json_escape(value))


def _environment(loader: BaseLoader, *, sandboxed: bool = False) -> Environment:
    # The sandbox costs a third of a render; only text typed into the playground needs it.
    # Loaders are snapshots: a compiled template is kept, never checked for changes.
    env = (_SandboxedEnvironment if sandboxed else _Environment)(
        loader=loader,
        auto_reload=False,
        autoescape=True,
        finalize=_finalize,
        undefined=_Undefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"],
    )
    env.filters.update(
        md=ct.md,
        plain=ct.plain,
        oneline=ct.oneline,
        truncate=ct.truncate,
        json=_json_filter,
        e=_escape_filter,
        escape=_escape_filter,
        url=ct.safe_url,
        mdurl=ct.md_url,
    )
    return env


class _SetLoader(BaseLoader):
    """'<set>/<file>' from the user dir, then the built-ins, then the default set.

    The user dir is read once, when the renderer is built: a renderer keeps
    the templates it was checked with, and files edited on disk take effect
    by a reload (which builds and checks a new renderer), never half-way.
    """

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


class _OverlayLoader(BaseLoader):
    """Another loader with some '<set>/<file>' names replaced by given text."""

    def __init__(self, base: _SetLoader, sources: dict[str, str]) -> None:
        self.base = base
        self.sources = sources

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Any]:
        if template in self.sources:
            return self.sources[template], template, lambda: True
        return self.base.get_source(environment, template)


def _builtin_root() -> Traversable:
    try:  # installed: the wheel maps templates/ to the package amfeishu.templates
        return resources.files("amfeishu.templates")
    except ModuleNotFoundError:  # a source checkout
        return Path(__file__).resolve().parent.parent / "templates"


@lru_cache(maxsize=1)
def _samples() -> tuple[Notification, ...]:
    """The bundled payloads check() renders (amfeishu/samples/*.json)."""
    try:
        root: Traversable = resources.files("amfeishu.samples")
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parent / "samples"
    if not root.is_dir():  # an install without them: check with a minimal one
        return (parse_notification(_FALLBACK_SAMPLE),)
    items = sorted((p for p in root.iterdir() if p.name.endswith(".json")), key=lambda p: p.name)
    return tuple(parse_notification(json.loads(p.read_text("utf-8"))) for p in items)


_FALLBACK_SAMPLE = {
    "receiver": "sample",
    "externalURL": "http://alertmanager.example:9093",
    "groupLabels": {"alertname": "Sample"},
    "commonLabels": {"alertname": "Sample", "severity": "critical"},
    "truncatedAlerts": 1,
    "alerts": [
        {
            "status": status,
            "labels": {"alertname": "Sample", "severity": "critical", "instance": f"host-{i}"},
            "annotations": {"summary": "summary", "description": "description"},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "2026-01-01T00:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example/graph",
        }
        for i, status in enumerate(("firing", "resolved"))
    ],
}


# ---- output -------------------------------------------------------------------


def _files_for(target: Target) -> tuple[str, ...]:
    if target.card_template_id:
        return ("cardkit.json.j2",)
    if target.msg_type in ("text", "post"):
        return (f"{target.msg_type}.json.j2",)
    return CARD_FILES


def _card_file(kind: str) -> str:
    known = kind in ("critical", "warning", "info")
    return f"firing-{kind}.json.j2" if known else "default.json.j2"


def _parse(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        line = text.splitlines()[exc.lineno - 1] if text.splitlines() else ""
        start = max(0, exc.colno - 40)
        raise RenderError(
            f"{origin}: output is not JSON: {exc.msg} at output line {exc.lineno} "
            f"column {exc.colno}: {line[start : start + 80]!r}"
        ) from None


def _cardkit(variables: Any, target: Target, origin: str) -> dict[str, Any]:
    if not isinstance(variables, dict):
        raise RenderError(f"{origin}: output must be a JSON object of template variables")
    data: dict[str, Any] = {"template_id": target.card_template_id}
    if target.card_template_version:
        data["template_version_name"] = target.card_template_version
    data["template_variable"] = variables
    return {"msg_type": "interactive", "card": {"type": "template", "data": data}}
