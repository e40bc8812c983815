"""Help that reads like a Unix tool's: flags without a type, values named by what they hold
(`--format FORMAT`, `--max-line-width N`) and arguments in capitals (`INPUTS...`), where Typer would show
`<bool>`, `<list[str]>` and `{inputs}...`. Applied to every command by the classes below."""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING

import typer.core

if TYPE_CHECKING:  # Typer >= 0.29 carries its own Click; the CLI's start-up (each Tab) skips importing another
    import click


def _value_type(param: click.Parameter) -> type | None:
    """The Python type of one value of an option: Typer >= 0.29 describes it, older Typer has Click's type."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is not None:
        args = typing.get_args(annotation)
        return args[0] if typing.get_origin(annotation) is list and args else annotation
    import click.types as click_types  # older Typer: Click itself is loaded already

    click_type = getattr(param, "type", None)
    if isinstance(click_type, click_types.IntParamType):
        return int
    return float if isinstance(click_type, click_types.FloatParamType) else None


def _one_value_name(name: str) -> str:
    """`formats` -> FORMAT, `eval_summaries` -> EVAL_SUMMARY: a repeatable option takes one value at a time."""
    upper = name.upper()
    if upper.endswith("IES"):
        return upper[:-3] + "Y"
    return upper.removesuffix("S")


def readable(params: list[click.Parameter]) -> None:
    """Give each parameter without a metavar the one a reader expects."""
    for param in params:
        if param.metavar is not None or param.name is None:
            continue
        if isinstance(param, typer.core.TyperArgument):
            param.metavar = param.name.upper()
            param.display_type_rich = lambda ctx: None  # the name says what it is; no `<list[Path]>` beside it
        elif getattr(param, "is_flag", False):
            param.metavar = ""  # a flag takes no value, so it shows none
        else:
            name = _one_value_name(param.name) if getattr(param, "multiple", False) else param.name.upper()
            param.metavar = {int: "N", float: "NUMBER"}.get(_value_type(param), name)


class Command(typer.core.TyperCommand):
    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        readable(params)
        return params

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, typer.core.TyperArgument):
                name = param.metavar or (param.name or "").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(f"{name}..." if param.nargs != 1 else name)
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class Group(typer.core.TyperGroup):
    # Typer appends --install-completion and --show-completion after the group is made, so fix names here
    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        readable(params)
        return params


def clock(seconds: float) -> str:
    """An amount of audio as people read it: 0:42, 12:05, 1:02:33."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
