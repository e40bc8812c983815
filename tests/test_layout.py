"""The package's layout: no import cycle (lazy imports included), no module over 800 lines, and a model core
that depends on nothing of the package outside itself except errors and constants.

The import graph is read from the source with `ast`, every `import` statement counted wherever it stands (in a
function, a method, a try block), so a cycle hidden behind a lazy import is found too. Only imports under
`if TYPE_CHECKING:` are left out: they name types for annotations and never run."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tinyaudio_cli"
ROOT = PACKAGE.name
MAX_LINES = 800


def module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import sub` imports the module pkg.sub; `from mod import thing` imports mod
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a non-module attribute: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:` blocks."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return nodes


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    """The reader itself: a function-level relative import is an edge, so the checks below can fail."""
    graph = import_graph()
    assert f"{ROOT}.cli.app" in graph[f"{ROOT}.cli"]
    assert f"{ROOT}.model.loading" in graph[f"{ROOT}.cli.options"]  # imported inside the --device callback
    assert f"{ROOT}.training.config" not in graph[f"{ROOT}.training.smoke"]  # only under TYPE_CHECKING
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_model_core_imports_only_itself() -> None:
    """model/ is what an exported model carries: it must not reach into the CLI, the pipeline or training, nor
    into the top-level errors/constants (which re-export model/'s)."""
    allowed: set[str] = set()
    outside = {
        (name, target)
        for name, targets in import_graph().items()
        if name == f"{ROOT}.model" or name.startswith(f"{ROOT}.model.")
        for target in targets
        if target not in allowed and target != f"{ROOT}.model" and not target.startswith(f"{ROOT}.model.")
    }
    assert outside == set()


def test_no_module_over_800_lines() -> None:
    long = {
        name: count for name, path in modules().items() if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_one_home_for_the_distributed_setup() -> None:
    """torchrun's environment is read, and a process group joined, in distributed.py only: train, eval and
    transcribe share one set-up instead of each reading RANK themselves."""
    markers = ("init_process_group", '"RANK"', '"WORLD_SIZE"', '"LOCAL_RANK"')
    elsewhere = {
        (name, marker)
        for name, path in modules().items()
        if name != f"{ROOT}.distributed"
        for marker in markers
        if marker in path.read_text(encoding="utf-8")
    }
    assert elsewhere == set()


def test_no_module_imports_another_modules_private_names() -> None:
    """A name starting with an underscore is its module's business: what another part needs is made public
    (as the data layer is for eval, train and download), so it is not taken from behind the module's back."""
    found = modules()
    taken = set()
    for name, path in found.items():
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not (node.level or (node.module or "").startswith(ROOT)):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    taken.add((name, alias.name))
    assert taken == set()


def test_the_cli_starts_without_the_heavy_libraries() -> None:
    """Every Tab of shell completion starts the CLI (tinyaudio_cli/completion.py), so parsing a command line
    must not import numpy, soundfile, torch, transformers or datasets: the commands import them when they run."""
    import subprocess
    import sys

    heavy = ("numpy", "soundfile", "torch", "transformers", "datasets", "ffmpeg")
    probe = f"import sys, tinyaudio_cli.cli; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == []
