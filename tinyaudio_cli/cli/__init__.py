"""The `tinyaudio` command line: parse options, call the library, render results. Nothing else.

app.py builds the Typer app, registers every command and holds the one error handler; options.py and style.py
are shared by the commands; each command has its own module."""

from __future__ import annotations

from .app import app, main

__all__ = ["app", "main"]
