"""The Jinja environment whose output is JSON: every printed value is JSON-escaped once.

The rules templates are written by are in docs/templates.md ("Escaping").
Configured templates run in a plain environment (as trusted as the config);
text typed into the playground runs in Jinja's sandbox.

Only Jinja's public API is used: `finalize` with `pass_eval_context`
(https://jinja.palletsprojects.com/en/stable/api/#jinja2.pass_eval_context)
and autoescape, whose Markup marks text that is already JSON.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import BaseLoader, Environment, Undefined, pass_eval_context
from jinja2.nodes import EvalContext
from jinja2.runtime import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from amfeishu.cards import text as ct


class _SetPaths:
    def join_path(self, template: str, parent: str) -> str:
        """A bare file name in an include/import is a file of the including set."""
        if "/" in template or "/" not in parent:
            return template
        return parent.split("/", 1)[0] + "/" + template


class _Environment(_SetPaths, Environment):
    """Configured templates: written by the operator, as trusted as the config."""


class _SandboxedEnvironment(_SetPaths, SandboxedEnvironment):
    """Templates typed into the playground: sandboxed (no attribute games)."""


class _Undefined(StrictUndefined):
    """Fails when printed, iterated or measured; falsy and comparable otherwise."""

    __slots__ = ()
    # StrictUndefined turns these into errors; Undefined's own are what we want back.
    __eq__ = Undefined.__eq__  # type: ignore[assignment]
    __ne__ = Undefined.__ne__  # type: ignore[assignment]
    __hash__ = Undefined.__hash__  # type: ignore[assignment]

    def __bool__(self) -> bool:  # type: ignore[override]
        return False


@pass_eval_context
def _finalize(eval_ctx: EvalContext, value: Any) -> Markup:
    # Autoescape makes macro and {% set %} block output Markup; Markup means
    # "already JSON text". Everything else is JSON-escaped exactly once here,
    # and autoescape's escape() then passes the Markup through unchanged.
    # Taking the eval context is what keeps constants such as {{ "a<b" }} out
    # of compile-time folding (which would HTML-escape them first): Jinja can
    # only call a finalize that needs the context at render time.
    # (str.__new__ skips Markup's own __new__: this runs for every {{ … }}.)
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


def environment(loader: BaseLoader, *, sandboxed: bool = False) -> Environment:
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
