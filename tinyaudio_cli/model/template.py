"""Check a checkpoint's chat template before transformers renders it: bounded in time and memory, one clear error.

A chat template is code that ships with a checkpoint. transformers renders it in jinja2's sandbox, which stops
attribute tricks but not work: `{{ 'x' * 100000000 }}` makes a 100 MB prompt that tokenization then turns
into gigabytes, and nested loops never end. The prompt is rendered once per model load, so it is rendered
here first, in a sandbox that refuses to build any text or list longer than MAX_TEXT and stops after
MAX_SECONDS; only a template that passes is handed to transformers.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import TinyAudioError

MAX_TEXT = 100_000  # characters (or items) any value the template builds may hold; a prompt is a few hundred
MAX_SECONDS = 2.0
WIDE_FORMAT = re.compile(r"[%{][^a-zA-Z%}]*\d{6}")  # a format width or precision of a million or more


class TemplateTooCostly(jinja2.TemplateError):
    pass


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict)) else 0


def _check_size(value: Any) -> Any:
    if _size(value) > MAX_TEXT:
        raise TemplateTooCostly(f"it builds a value of {_size(value):,} characters (at most {MAX_TEXT:,})")
    return value


def _check_request(obj: Any, args: tuple, kwargs: dict) -> None:
    """Refuse, before it runs, an operation whose arguments ask for more than MAX_TEXT (a width, a count)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_TEXT:
            raise TemplateTooCostly(f"it asks for a size of {value:,} (at most {MAX_TEXT:,})")
    for value in (obj, *args):
        if isinstance(value, str) and WIDE_FORMAT.search(value):
            raise TemplateTooCostly("it formats with a width of a million characters or more")


def _check_replace(text: str, old: str, new: str) -> None:
    grown = len(text) + (text.count(old) * len(new) if old else (len(text) + 1) * len(new))
    if grown > MAX_TEXT:
        raise TemplateTooCostly(f"it replaces its way to {grown:,} characters (at most {MAX_TEXT:,})")


def _bounded(function: Callable) -> Callable:
    """A filter whose arguments are checked before and whose result is checked after (functools.wraps keeps
    the jinja_pass_arg mark, so jinja still passes a context or environment first to the filters that want it)."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        _check_request(None, args, kwargs)
        texts = [arg for arg in args if isinstance(arg, str)]
        if function.__name__ == "do_replace" and len(texts) >= 3:
            _check_replace(*texts[:3])
        return _check_size(function(*args, **kwargs))

    return call


class _Generation(Extension):
    """transformers' `{% generation %}` block (it marks assistant tokens); here it only renders its body."""

    tags = frozenset({"generation"})

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Callable[[], str]) -> str:
        return caller()


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """transformers' chat-template environment (sandboxed, immutable, trim_blocks, lstrip_blocks, loop
    controls, its globals and tojson), with every operation that can grow a value checked."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, "jinja2.ext.loopcontrols"])
        self.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: (
            json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
        )
        self.filters = {name: _bounded(function) for name, function in self.filters.items()}
        self.globals["raise_exception"] = _raise
        self.globals["strftime_now"] = lambda format: datetime.now().strftime(format)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if _size(sequence) and isinstance(count, int) and _size(sequence) * count > MAX_TEXT:
                    raise TemplateTooCostly(f"it repeats a value {count:,} times (at most {MAX_TEXT:,} characters)")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 64:
            raise TemplateTooCostly(f"it raises a number to the power {right:,}")
        elif operator == "%" and isinstance(left, str):
            _check_request(left, (), {})
        elif operator == "+" and _size(left) + _size(right) > MAX_TEXT:
            raise TemplateTooCostly(f"it builds a value of more than {MAX_TEXT:,} characters")
        return _check_size(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable | None:
        """`'…'.format` (the sandbox wraps it): a huge width is refused before the text is made."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _check_request(value.__self__, (), {})

        def checked(*args: Any, **kwargs: Any) -> Any:
            _check_request(None, args, kwargs)
            return _check_size(wrapped(*args, **kwargs))

        return checked

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        _check_request(owner, args, kwargs)
        if isinstance(owner, str) and getattr(__obj, "__name__", "") == "replace" and len(args) >= 2:
            _check_replace(owner, str(args[0]), str(args[1]))
        return _check_size(super().call(__context, __obj, *args, **kwargs))


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def _joined(join: Callable) -> Callable:
    def checked(items: Any) -> Any:
        items = list(items)
        if sum(len(str(item)) for item in items) > MAX_TEXT:
            raise TemplateTooCostly(f"it builds a value of more than {MAX_TEXT:,} characters")
        return join(items)

    return checked


def render_checked(template: str, **variables: Any) -> str:
    """The template rendered with `variables` within the bounds, or a jinja2.TemplateError (a syntax error,
    a sandbox violation, TemplateTooCostly) saying why not."""
    compiled = BoundedEnvironment().from_string(template)
    namespace = compiled.root_render_func.__globals__  # where the compiled code finds `~`'s helpers
    for name in ("str_join", "markup_join"):
        namespace[name] = _joined(namespace[name])
    deadline = time.monotonic() + MAX_SECONDS

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise TemplateTooCostly(f"it renders for more than {MAX_SECONDS:g} s")
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)  # every line of the template's code checks the clock (loops run up to 100,000 steps)
    try:
        pieces, length = [], 0
        for piece in compiled.generate(**variables):
            length += len(piece)
            if length > MAX_TEXT:
                raise TemplateTooCostly(f"its output exceeds {MAX_TEXT:,} characters")
            pieces.append(piece)
    finally:
        sys.settrace(previous)
    return "".join(pieces)


def template_file(tokenizer: Any) -> str:
    """Where a tokenizer's chat template came from, for an error message."""
    folder = Path(getattr(tokenizer, "name_or_path", "") or ".")
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        if (folder / name).is_file():
            return str(folder / name)
    return f"the chat template of {folder}"


def describe(error: jinja2.TemplateError) -> str:
    """One line for any template failure."""
    if isinstance(error, jinja2.TemplateSyntaxError):
        return f"syntax error on line {error.lineno}: {error.message}"
    if isinstance(error, SecurityError):
        return f"refused by the sandbox: {error}"
    if isinstance(error, TemplateTooCostly):
        return f"refused: {error}"
    return f"{type(error).__name__}: {error}"


def check_chat_template(tokenizer: Any, messages: list[dict[str, str]]) -> None:
    """Render the tokenizer's chat template as transformers will (same variables), within the bounds; a
    TinyAudioError naming the template's file if it cannot be."""
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if not isinstance(template, str):
        return  # no template: transformers says so itself
    variables = {key: value for key, value in tokenizer.special_tokens_map.items() if isinstance(value, str)}
    variables |= {"messages": messages, "add_generation_prompt": True, "enable_thinking": False}
    try:
        render_checked(template, **variables)
    except jinja2.TemplateError as error:
        reason = " ".join(describe(error).split())
        raise TinyAudioError(f"chat template {template_file(tokenizer)}: {reason}") from None
