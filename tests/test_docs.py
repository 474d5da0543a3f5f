"""Every code sample in README.md and docs/*.md is exercised.

A fenced block is tagged by an HTML comment on the line before it (invisible when rendered)::

    <!-- test: run -->                 run it against a live server (bash or python)
    <!-- test: write mysite/x.py -->   (installation.md) the file's whole new content
    <!-- test: append mysite/x.py -->  (installation.md) added at the end of the file
    <!-- test: shell -->               (installation.md) run in the new project's directory
    <!-- test: serve -->               (installation.md) start this server in the background
    <!-- test: file NAME -->           written to the directory the ``run`` blocks run in
    <!-- test: defaults -->            (configuration.md) ``OPENRESPONSES`` equal to conf.DEFAULTS
    <!-- test: covered tests/x.py::test_name -->   another test exercises it (it must exist)
    <!-- test: skip <reason> -->       not runnable here; the reason is required

``run`` blocks of one file run as one bash script and one python script each, in order (so a
later block may use what an earlier one created), against the embedded server, with
``127.0.0.1:8000`` pointing at it; ``python manage.py`` works there on a database of its own. ``installation.md`` is followed literally in a fresh
``django-admin startproject mysite``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import ROOT, free_port, wait_for_http

DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
TAG = re.compile(r"^<!--\s*test:\s*(\w[\w-]*)\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
ACTIONS = {"run", "file", "defaults", "write", "append", "shell", "serve", "covered", "skip"}
PROJECT_ACTIONS = {"write", "append", "shell", "serve"}
BIN = Path(sys.executable).parent
ERROR_BODY = re.compile(r'"error"\s*:\s*\{')


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    code: str
    action: str | None
    arg: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index].strip())
        if not match:
            index += 1
            continue
        fence, lang, start = match.group(1), match.group(2).lower(), index
        end = next(
            (j for j in range(index + 1, len(lines)) if lines[j].strip().startswith(fence)), len(lines)
        )
        previous = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        tag = TAG.match(previous)
        found.append(
            Block(
                path,
                start + 1,
                lang,
                "\n".join(lines[start + 1 : end]) + "\n",
                tag.group(1) if tag else None,
                tag.group(2) if tag else "",
            )
        )
        index = end + 1
    return found


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The venv's python/pip/django-admin/daphne first on PATH; no provider keys from the caller."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and not k.startswith(("OPENRESPONSES_", "DJANGO_"))
    }
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": "",
            "DATABASE_URL": "",
        }
    )
    # `pip install -e .` (CI, make) makes the apps importable anywhere; a bare checkout needs the path.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("VIRTUAL_ENV", None)
    return {**env, **(extra or {})}


def run_script(kind: str, code: str, cwd: Path, env: dict[str, str], where: str) -> str:
    command = ["bash", "-euo", "pipefail", "-c", code] if kind == "bash" else [sys.executable, "-c", code]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{where}: exited {result.returncode}\n{output}"
    assert not ERROR_BODY.search(result.stdout), f"{where}: an API error in the output\n{output}"
    return output


def kind_of(block: Block) -> str:
    if block.lang in {"bash", "sh", "shell", "console"}:
        return "bash"
    if block.lang in {"python", "py"}:
        return "python"
    raise AssertionError(f"{block.where}: a 'run' block must be bash or python, not {block.lang!r}")


ALL_BLOCKS = [block for path in DOC_FILES for block in blocks_of(path)]


def test_docs_exist():
    names = {p.name for p in DOC_FILES}
    assert {
        "README.md",
        "index.md",
        "installation.md",
        "configuration.md",
        "api.md",
        "operations.md",
    } <= names


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.where for b in ALL_BLOCKS])
def test_every_block_is_tagged(block: Block):
    assert block.action in ACTIONS, (
        f"{block.where}: tag the block with <!-- test: run|covered …|skip <reason> --> (see tests/test_docs.py)"
    )
    if block.action == "skip":
        assert len(block.arg) >= 10, f"{block.where}: a skipped block needs a reason"
    if block.action == "covered":
        file, _, name = block.arg.partition("::")
        target = ROOT / file
        assert target.is_file() and re.search(
            rf"^\s*(async )?def {re.escape(name)}\(", target.read_text(), re.M
        ), f"{block.where}: {block.arg} does not exist"
    if block.action == "defaults":
        assert block.path.name == "configuration.md", (
            f"{block.where}: 'defaults' is for configuration.md only"
        )
    if block.action in PROJECT_ACTIONS:
        assert block.path.name == "installation.md", (
            f"{block.where}: {block.action!r} is for installation.md only"
        )


RUN_FILES = sorted({b.path for b in ALL_BLOCKS if b.action == "run" and b.path.name != "installation.md"})
ENV_NAME = re.compile(r"\bOPENRESPONSES_[A-Z][A-Z_]*[A-Z]\b")


@pytest.mark.parametrize("path", RUN_FILES, ids=[str(p.relative_to(ROOT)) for p in RUN_FILES])
def test_run_blocks(path: Path, server, tmp_path):
    port = server.url.rsplit(":", 1)[1]
    env = tool_env({"OPENAI_API_KEY": "test-key", "OPENRESPONSES_SQLITE_PATH": str(tmp_path / "db.sqlite3")})
    blocks = blocks_of(path)
    for block in blocks:
        if block.action == "file":
            (tmp_path / block.arg).write_text(block.code)
    if any("manage.py" in b.code for b in blocks if b.action == "run"):
        shutil.copy(ROOT / "manage.py", tmp_path / "manage.py")
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=tmp_path, env=env, check=True)
    for kind in ("bash", "python"):
        parts = [b for b in blocks if b.action == "run" and kind_of(b) == kind]
        if parts:
            code = "\n".join(b.code for b in parts).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            run_script(
                kind,
                code,
                tmp_path,
                env,
                f"{path.name} ({kind}: lines {', '.join(str(b.line) for b in parts)})",
            )


@pytest.mark.e2e
def test_installation_into_a_fresh_project(tmp_path):
    """docs/installation.md followed literally, block by block, in a new ``django-admin startproject``."""
    site = tmp_path / "mysite"
    port = free_port()
    env = tool_env()
    subprocess.run([str(BIN / "django-admin"), "startproject", "mysite"], cwd=tmp_path, env=env, check=True)
    servers: list[subprocess.Popen] = []
    ran = set()
    try:
        for block in blocks_of(ROOT / "docs" / "installation.md"):
            code = block.code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            if block.action in {"write", "append"}:
                target = site / block.arg
                target.parent.mkdir(parents=True, exist_ok=True)
                before = target.read_text() if block.action == "append" and target.exists() else ""
                target.write_text(before + ("\n" if before else "") + code)
            elif block.action in {"shell", "run"}:
                run_script(kind_of(block), code, site, env, block.where)
            elif block.action == "serve":
                command = shlex.split(code.strip().splitlines()[-1].replace("8000", str(port)))
                log = open(tmp_path / f"serve-{len(servers)}.log", "w")  # noqa: SIM115 - closed with the process
                servers.append(
                    subprocess.Popen(
                        command,
                        cwd=site,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
                wait_for_http(f"http://127.0.0.1:{port}/", process=servers[-1])
            ran.add(block.action)
        assert {"append", "shell", "serve", "run"} <= ran, f"installation.md exercised only {sorted(ran)}"
    finally:
        for process in servers:  # runserver's autoreloader has a child: stop the whole group
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    for log in tmp_path.glob("serve-*.log"):
        assert "Traceback" not in log.read_text(), log.read_text()


def test_documented_defaults_are_the_defaults():
    """The OPENRESPONSES dict shown in configuration.md is exactly the apps' DEFAULTS together."""
    from providers_app.conf import DEFAULTS as PROVIDER_DEFAULTS
    from responses_app.conf import DEFAULTS

    (block,) = [b for b in blocks_of(ROOT / "docs" / "configuration.md") if b.action == "defaults"]
    namespace: dict = {}
    exec(block.code, namespace)  # noqa: S102 - our own documentation
    assert not set(DEFAULTS) & set(PROVIDER_DEFAULTS)  # each key has one owner
    assert namespace["OPENRESPONSES"] == {**DEFAULTS, **PROVIDER_DEFAULTS}


def test_every_environment_variable_is_documented():
    text = (ROOT / "docs" / "configuration.md").read_text()
    used = set()
    for package in ("openresponses_site", "responses_app", "providers_app"):
        for source in (ROOT / package).rglob("*.py"):
            used |= set(ENV_NAME.findall(source.read_text()))
    missing = sorted(name for name in used if f"`{name}`" not in text)
    assert not missing, f"docs/configuration.md does not document: {missing}"
