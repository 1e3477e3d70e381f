"""Renderer: a notification and a target → a Feishu message, checked, or the safe card.

How templates are written, their context and their escaping:
docs/templates.md. A template that fails in any way yields the safe message,
and `Rendered.error` says why, naming the file and line.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jinja2 import Environment, TemplateNotFound, TemplateSyntaxError

from amfeishu.cards import checks, context, facts
from amfeishu.cards import text as ct
from amfeishu.cards.actions import sample_app_context
from amfeishu.cards.facts import kind_of
from amfeishu.cards.jinja import environment
from amfeishu.cards.safe import safe_message, safe_storm
from amfeishu.cards.sets import (
    CARD_FILES,
    FILE_NAME,
    SET_NAME,
    STORM_FILE,
    OverlayLoader,
    SetLoader,
    builtin_root,
    card_file,
    digests,
    files_for,
)
from amfeishu.cards.storm import StormGroup, groups_of, storm_alerts, storm_context
from amfeishu.config.types import LANGUAGES, Target
from amfeishu.models import Notification, parse_notification

SAFE = "builtin:safe"


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
        self.language = language if language in LANGUAGES else "zh"
        self.timezone = timezone
        self._loader = SetLoader(self.user_dir, builtin_root())
        self._env = environment(self._loader)
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
        app: dict[str, Any] | None = None,
    ) -> Rendered:
        """The message for target; the safe message (with error set) if the template fails.

        `app`: an app target's state lines and callback buttons (cards/actions.py).
        """
        now = now or datetime.now(UTC)
        name = ""
        try:
            name = self._select(n, target)
            message = self._render_strict(name, n, target, compact, omitted, now, app=app)
        except Exception as exc:  # any template bug: the alert still goes out
            reason = self._describe(exc, name)
            return Rendered(self._safe(n, target, compact, omitted, reason, now), SAFE, reason)
        return Rendered(message, name, None)

    def title(self, n: Notification, target: Target) -> str:
        """The card title in the target's language ("[FIRING:2] HighCPU")."""
        language = "en" if self._language(target) == "en" else "zh"
        return facts.title(n, language, target.keyword)

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

    def render_storm(
        self,
        n: Notification,
        groups: list[StormGroup],
        target: Target,
        *,
        backlog: int = 0,
        safe: bool = False,
        source: str | None = None,
        now: datetime | None = None,
    ) -> Rendered:
        """A storm digest of these groups from storm.json.j2 (or `source` in its place, in
        the sandbox, as render_source), or the safe digest."""
        name = ""
        try:
            if safe:
                raise RenderError("refused by Feishu")
            env = None
            if source is not None:
                if not self._set_exists(target.template):
                    raise RenderError(f"template set {target.template!r} not found")
                name = f"{target.template}/{STORM_FILE}"
                env = environment(OverlayLoader(self._loader, {name: source}), sandboxed=True)
            else:
                name = self._resolve(target.template, STORM_FILE)
            message = self._render_storm_strict(name, n, groups, target, backlog, now, env)
        except Exception as exc:  # any template bug: the alerts still go out
            reason = self._describe(exc, name)
            message = safe_storm(n, groups, target, self._language(target), reason)
            return Rendered(message, SAFE, None if safe else reason)
        return Rendered(message, name, None)

    def _render_storm_strict(
        self,
        name: str,
        n: Notification,
        groups: list[StormGroup],
        target: Target,
        backlog: int,
        now: datetime | None,
        env: Environment | None = None,
    ) -> dict[str, Any]:
        template = (env or self._env).get_template(name)
        origin = template.filename or name
        language = self._language(target)
        view = context.target_view(target, language, self._tz(target))

        def once(lang: str) -> Any:
            ctx = storm_context(n, groups, lang, backlog)
            if target.keyword and target.keyword not in ctx["title"]:
                ctx["title"] = f"{target.keyword} {ctx['title']}"
            ctx.update(target=view, language=lang, t=partial(ct.translate, lang))
            ctx["now"] = now or datetime.now(UTC)
            return _parse(template.render(ctx), origin)

        if language == "auto":
            message = checks.merge_i18n(once("zh"), once("en"))
        else:
            message = once("en" if language == "en" else "zh")
        problem = checks.card_problem(message)
        if problem:
            raise RenderError(f"{origin}: {problem}")
        return checks.ensure_keyword(message, target.keyword)

    def check(self, targets: Iterable[Target]) -> list[str]:
        """Problems of every template the targets may use, tried on the bundled samples."""
        problems = self._user_dir_problems()
        samples = samples_for_checks()
        tried: set[tuple[Any, ...]] = set()
        for target in targets:
            files = files_for(target)
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
            else:  # every file found: the digest of storms too
                storm = (target.template, self._language(target), "storm", target.keyword)
                if digests(target) and storm not in tried:
                    tried.add(storm)
                    problem = self._trial_storm(target, samples)
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
        app: dict[str, Any] | None = None,
    ) -> Rendered:
        """render() with file of the target's set replaced by source; nothing is saved.

        An edited card/text/post file (``*.json.j2``) is rendered itself; an
        edited helper (``_macros.j2``) is used by the file render() would pick.
        Same sandbox, escaping and checks as render(); errors name the line.
        """
        now = now or datetime.now(UTC)
        name = ""
        try:
            if not FILE_NAME.match(file or ""):
                raise RenderError(f"template file must be a name like x.json.j2, got {file!r:.60}")
            if not self._set_exists(target.template):
                raise RenderError(f"template set {target.template!r} not found")
            edited = f"{target.template}/{file}"
            env = environment(OverlayLoader(self._loader, {edited: source}), sandboxed=True)
            name = edited if file.endswith(".json.j2") else self._select(n, target)
            message = self._render_strict(name, n, target, compact, omitted, now, env, app)
        except Exception as exc:  # reported like render() does, with the safe message
            reason = self._describe(exc, name)
            return Rendered(self._safe(n, target, compact, omitted, reason, now), SAFE, reason)
        return Rendered(message, name, None)

    def template_source(self, set_name: str, file: str) -> tuple[str, str] | None:
        """(text, where it comes from) of a file as the set sees it, or None."""
        if not self._set_exists(set_name) or not FILE_NAME.match(file or ""):
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
        return bool(SET_NAME.match(set_name or "")) and self._loader.has_set(set_name)

    def _select(self, n: Notification, target: Target) -> str:
        files = files_for(target)
        if len(files) > 1:  # a card target: the file by kind
            files = (card_file(kind_of(n)[0]),)
        return self._resolve(target.template, files[0])

    def _resolve(self, set_name: str, file: str) -> str:
        """'<set>/<file>' to load for file, after the fallbacks of docs/templates.md."""
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
        return target.language if target.language in LANGUAGES else self.language

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
        app: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        template = (env or self._env).get_template(name)
        origin = template.filename or name
        language, tz = self._language(target), self._tz(target)
        base = context.context(n, target, language, tz, compact, omitted, now, app)
        file = name.rsplit("/", 1)[-1]

        def once(language: str) -> Any:
            ctx = dict(base, **context.for_language(n, language, target.keyword))
            return _parse(template.render(ctx), origin)

        language = self._language(target)
        if language != "auto" or file in ("text.json.j2", "cardkit.json.j2"):
            message = once("en" if language == "en" else "zh")
        elif file == "post.json.j2":
            message = checks.merge_posts(once("zh"), once("en"))
        else:
            message = checks.merge_i18n(once("zh"), once("en"))
        if file == "cardkit.json.j2":
            message = _cardkit(message, target, origin)
        problem = checks.card_problem(message)
        if problem:
            raise RenderError(f"{origin}: {problem}")
        return checks.ensure_keyword(message, target.keyword)

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
        return safe_message(n, target, language, tz, compact, omitted, reason, now)

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
        app = sample_app_context(target)
        for n in samples:
            for compact, omitted in ((False, 0), (True, 3)):
                try:
                    self._render_strict(name, n, target, compact, omitted, now, app=app)
                except Exception as exc:  # reported, not raised: check lists every problem
                    return self._describe(exc, name)
        return None

    def _trial_storm(self, target: Target, samples: tuple[Notification, ...]) -> str | None:
        name = ""
        try:
            name = self._resolve(target.template, STORM_FILE)
            for n in samples:
                alerts = storm_alerts(n.alerts)
                self._render_storm_strict(name, n, groups_of(alerts, n), target, len(alerts), None)
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


def samples_dir() -> Traversable:
    """The bundled sample payloads (amfeishu/samples/*.json)."""
    try:
        return resources.files("amfeishu.samples")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "samples"


@lru_cache(maxsize=1)
def samples_for_checks() -> tuple[Notification, ...]:
    """The bundled payloads check() renders."""
    root = samples_dir()
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
