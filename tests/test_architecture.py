"""The dependency contracts in ``pyproject.toml`` ([tool.importlinter]) hold: ``lint-imports`` passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on this checkout (not an installed copy), without its cache."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
        + ["--no-cache", "--no-logo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_dependency_contract_is_kept():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and " kept" in result.stdout


def test_a_broken_contract_fails(tmp_path):
    """The check can fail: a rule this code breaks (the views use the flows) is reported."""
    config = tmp_path / "broken.toml"
    config.write_text(
        "[tool.importlinter]\n"
        'root_packages = ["responses_app"]\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "views without flows"\n'
        'type = "forbidden"\n'
        'source_modules = ["responses_app.api.views"]\n'
        'forbidden_modules = ["responses_app.services.flows"]\n'
    )
    result = lint_imports(str(config))
    assert result.returncode != 0
    assert (
        "BROKEN" in result.stdout
        and "responses_app.api.views -> responses_app.services.flows" in result.stdout
    )


def test_the_documented_tree_is_the_tree() -> None:
    """Every folder and module docs/architecture.md names (first word of each line, by indent) exists."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "architecture.md").read_text()
    block = doc.split("```\n", 2)[1]
    stack: list[tuple[int, Path]] = []
    checked = 0
    for line in block.splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match or line.startswith(" " * 20):
            continue  # continuation lines of a description
        indent, first = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else root
        names = (
            [first]
            if first.endswith("/")
            else [n for n in line.strip().split("  ")[0].split() if n.endswith(".py")]
        )
        for name in names:
            path = parent / name.rstrip("/")
            assert path.exists(), f"docs/architecture.md names {path.relative_to(root)}, which does not exist"
            checked += 1
        if first.endswith("/"):
            stack.append((indent, parent / first.rstrip("/")))
    assert checked > 20
