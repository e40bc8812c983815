"""Write the static shell completion scripts in this folder from the tinyaudio CLI.

    python completions/generate.py           # rewrite the stale ones of tinyaudio.bash, _tinyaudio, ...
    python completions/generate.py --check   # list the stale ones and exit 1, writing nothing

The scripts are rendered by `tinyaudio_cli.completion`; run this after changing a command or an option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's package, whichever tinyaudio is installed

from tinyaudio_cli.completion import render_all  # noqa: E402


def stale_scripts(directory: Path, scripts: dict[str, str]) -> list[str]:
    """Names of the scripts whose file in `directory` is missing or differs from the rendered text."""
    return [name for name, text in scripts.items() if _read(directory / name) != text]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")  # universal newlines: a CRLF checkout still matches
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write tinyaudio's shell completion scripts.")
    parser.add_argument("--check", action="store_true", help="list stale scripts and exit 1; write nothing")
    parser.add_argument("--out", type=Path, default=HERE, help="folder of the scripts (default: this one)")
    args = parser.parse_args(argv)
    scripts = render_all()
    stale = stale_scripts(args.out, scripts)
    if args.check:
        for name in stale:
            print(f"stale: {args.out / name}", file=sys.stderr)
        if stale:
            print("regenerate them with: python completions/generate.py", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.out / name).write_text(scripts[name], encoding="utf-8", newline="\n")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
