"""The import rules of docs/architecture.md, checked on every import statement (function-level ones too).

* one way: ``cli → entities → tora2`` (tora2 imports neither; entities does not import cli);
* a command module imports no other command module (only ``cli.errors``; ``cli.main`` wires them all);
* scripts/ and benchmarks/ drive the library, never cli/ (they run the ``tora2`` command as a process);
* entities/ does not reach into training internals (``tora2.training``);
* tora2.synthetic does not import tora2.training (training uses synthetic data, not the reverse).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names] if module in ("cli", "entities") else [(node.lineno, module)]
    return found


def forbidden(path: Path, module: str) -> str | None:
    """Why ``path`` may not import ``module`` (None: allowed)."""
    parts = path.relative_to(ROOT).parts
    top = parts[0]
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    first = module.split(".")[0]
    if top == "tora2" and first in ("cli", "entities"):
        return "tora2/ must not import cli/ or entities/ (cli → entities → tora2)"
    if top == "entities" and first == "cli":
        return "entities/ must not import cli/ (cli → entities → tora2)"
    if top == "entities" and module.startswith("tora2.training"):
        return "entities/ must not import training internals"
    if top in ("scripts", "benchmarks") and first == "cli":
        return f"{top}/ must not import cli/: call the library, or run the tora2 command as a process"
    own = ".".join(parts[:2]) if len(parts) > 2 else None  # a command package (cli/studio/) may use its own modules
    if (top == "cli" and first == "cli" and name != "cli.main" and not module.startswith("cli.errors")
            and not (own and module.startswith(own.replace("/", ".")))):
        return "a command module imports only cli.errors; cli/main.py wires the commands"
    if name.startswith("tora2.synthetic") and module.startswith("tora2.training"):
        return "tora2.synthetic must not import tora2.training (no cycle)"
    return None


FILES = sorted(p for d in ("cli", "entities", "tora2", "scripts", "benchmarks") for p in (ROOT / d).rglob("*.py"))


def test_the_rules_see_every_package():
    assert {p.relative_to(ROOT).parts[0] for p in FILES} == {"cli", "entities", "tora2", "scripts", "benchmarks"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_one_way(path):
    bad = [f"{path.relative_to(ROOT)}:{line} imports {module}: {why}"
           for line, module in imports(path) if (why := forbidden(path, module))]
    assert not bad, "\n".join(bad)


def test_the_checker_catches_a_forbidden_import(tmp_path):
    """The rule itself works: an entities module importing cli is refused."""
    assert forbidden(ROOT / "entities" / "x.py", "cli.generate") is not None
    assert forbidden(ROOT / "cli" / "batch.py", "cli.generate") is not None
    assert forbidden(ROOT / "cli" / "batch.py", "cli.errors") is None
    assert forbidden(ROOT / "tora2" / "synthetic" / "dataset.py", "tora2.training.dataset") is not None
    assert forbidden(ROOT / "scripts" / "train_embedded.py", "cli.train") is not None
