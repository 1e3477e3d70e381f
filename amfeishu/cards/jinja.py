"""The Jinja environment whose output is JSON: every printed value is JSON-escaped once.

The rules templates are written by are in docs/templates.md ("Escaping").
Configured templates run in a plain environment (as trusted as the config);
text typed into the playground runs in Jinja's sandbox.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import BaseLoader, Environment, Undefined, nodes
from jinja2.compiler import CodeGenerator
from jinja2.runtime import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from amfeishu.cards import text as ct


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
    # StrictUndefined turns these into errors; Undefined's own are what we want back.
    __eq__ = Undefined.__eq__  # type: ignore[assignment]
    __ne__ = Undefined.__ne__  # type: ignore[assignment]
    __hash__ = Undefined.__hash__  # type: ignore[assignment]

    def __bool__(self) -> bool:  # type: ignore[override]
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
