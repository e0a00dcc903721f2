"""The container image: hadolint, the Dockerfile's structure, and its build steps rehearsed.

No container engine runs here, so the build itself is rehearsed: the files the Dockerfile
copies are staged as its context would hold them, the wheel is built from them, and the wheel
is installed into a fresh pip-less venv the way the builder stage does it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

from tests.deploy.support import DEFAULT_PORT, REPO_ROOT, config_check
from tests.support.tools import run_tool

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
CONFIG_PATH = "/etc/ollama-probe-exporter/config.yml"
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|g\+\+|make|build-essential|python3?-dev)\b")

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """Split a Dockerfile into (KEYWORD, arguments): continuations joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages(text: str) -> list[list[Instruction]]:
    """The build stages, each starting at its FROM."""
    result: list[list[Instruction]] = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def args_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [rest for kw, rest in stage if kw == keyword]


def copy_sources(stage: list[Instruction]) -> list[str]:
    """Build-context sources of the stage's COPY instructions (not COPY --from)."""
    sources = []
    for rest in args_of(stage, "COPY"):
        if not rest.startswith("--from"):
            sources += rest.split()[:-1]
    return sources


def dockerignore_allows(path: str) -> bool:
    """Whether .dockerignore lets ``path`` into the context (last matching pattern wins)."""
    allowed = True
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)
        if hit:
            allowed = negate
    return allowed


@pytest.fixture(scope="module")
def dockerfile_stages() -> list[list[Instruction]]:
    return stages(DOCKERFILE.read_text())


def test_hadolint_finds_nothing() -> None:
    """hadolint reports no finding at any level, style included."""
    result = run_tool("hadolint", "--failure-threshold", "style", str(DOCKERFILE))
    assert (result.returncode, result.stdout) == (0, "")


class TestStructure:
    def test_multi_stage_on_a_slim_python_base(
        self, dockerfile_stages: list[list[Instruction]]
    ) -> None:
        """A builder stage and a final stage, both on the slim Python base the ARG names."""
        base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
        assert base is not None
        assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", base.group(1))
        assert [args_of(s, "FROM") for s in dockerfile_stages] == [
            ["${PYTHON_IMAGE} AS builder"],
            ["${PYTHON_IMAGE}"],
        ]

    def test_final_stage_installs_no_build_tools(
        self, dockerfile_stages: list[list[Instruction]]
    ) -> None:
        """The final stage runs no package manager or compiler and copies only the built venv."""
        final = dockerfile_stages[-1]
        runs = " ".join(args_of(final, "RUN"))
        from_builder = [c for c in args_of(final, "COPY") if c.startswith("--from")]
        assert BUILD_TOOLS.search(runs) is None
        assert from_builder == ["--from=builder /opt/venv /opt/venv"]
        assert "pip uninstall" in runs

    def test_runs_as_a_numeric_non_root_user(
        self, dockerfile_stages: list[list[Instruction]]
    ) -> None:
        """USER is numeric and non-root, and matches the user the stage creates."""
        final = dockerfile_stages[-1]
        (user,) = args_of(final, "USER")
        uid, gid = (int(x) for x in user.split(":"))
        runs = " ".join(args_of(final, "RUN"))
        assert uid != 0
        assert gid != 0
        assert f"--uid {uid}" in runs
        assert f"--gid {gid}" in runs

    def test_port_and_healthcheck_use_the_exporter_default(
        self, dockerfile_stages: list[list[Instruction]]
    ) -> None:
        """EXPOSE and the HEALTHCHECK URL use the exporter's default port and /-/healthy."""
        final = dockerfile_stages[-1]
        (healthcheck,) = args_of(final, "HEALTHCHECK")
        assert args_of(final, "EXPOSE") == [str(DEFAULT_PORT)]
        assert f"http://127.0.0.1:{DEFAULT_PORT}/-/healthy" in healthcheck

    def test_config_lives_at_the_documented_path(
        self, dockerfile_stages: list[list[Instruction]]
    ) -> None:
        """The default config is copied to, and CMD reads, /etc/ollama-probe-exporter/config.yml."""
        final = dockerfile_stages[-1]
        (cmd,) = args_of(final, "CMD")
        assert json.loads(cmd) == ["--config.file", CONFIG_PATH]
        assert json.loads(args_of(final, "ENTRYPOINT")[0]) == ["ollama-probe-exporter"]
        assert f"deploy/docker/config.yml {CONFIG_PATH}" in args_of(final, "COPY")

    def test_oci_labels_and_version(self, dockerfile_stages: list[list[Instruction]]) -> None:
        """OCI labels are set, and the image version is the package version."""
        final = dockerfile_stages[-1]
        labels = " ".join(args_of(final, "LABEL"))
        version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
        for key in ("title", "description", "version", "licenses"):
            assert f"org.opencontainers.image.{key}=" in labels
        assert f"VERSION={version}" in args_of(final, "ARG")


class TestBuildContext:
    def test_dockerignore_admits_every_copied_file(
        self, dockerfile_stages: list[list[Instruction]]
    ) -> None:
        """Every COPY source exists and passes .dockerignore; the venv, tests and git stay out."""
        sources = [s for stage in dockerfile_stages for s in copy_sources(stage)]
        assert sources
        assert [s for s in sources if not (REPO_ROOT / s).exists()] == []
        assert [s for s in sources if not dockerignore_allows(s)] == []
        for excluded in (
            ".venv/bin/python",
            "tests/__init__.py",
            ".git/HEAD",
            "exporter/__pycache__/x.pyc",
        ):
            assert not dockerignore_allows(excluded), excluded

    def test_build_steps_give_a_working_install(
        self, dockerfile_stages: list[list[Instruction]], tmp_path: Path
    ) -> None:
        """The builder's steps (wheel from the staged context, pip-less venv) give a working CLI."""
        context = tmp_path / "context"
        for source in {s for stage in dockerfile_stages for s in copy_sources(stage)}:
            src = REPO_ROOT / source
            if src.is_dir():
                shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                (context / source).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, context / source)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        # Offline: the dependencies come from this venv below, not from an index.
        wheel = subprocess.run(
            [
                *pip,
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                str(tmp_path / "wheels"),
                ".",
            ],
            cwd=context,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert wheel.returncode == 0, wheel.stdout + wheel.stderr
        target = tmp_path / "venv"
        venv.create(target, with_pip=False)
        python = target / "bin" / "python"
        wheels = [str(p) for p in (tmp_path / "wheels").glob("*.whl")]
        install = subprocess.run(
            [*pip, "--python", str(python), "install", "--no-deps", "--no-index", *wheels],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert install.returncode == 0, install.stdout + install.stderr
        # Dependencies from this venv's site-packages; PYTHONPATH skips .pth files, so the
        # editable checkout is not importable and `exporter` must come from the wheel.
        env = {"PYTHONPATH": sysconfig.get_paths()["purelib"], "PATH": os.environ.get("PATH", "")}
        where = subprocess.run(
            [str(python), "-c", "import exporter; print(exporter.__file__)"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert where.stdout.startswith(str(target)), where.stdout + where.stderr
        installed = sorted(
            p.relative_to(Path(where.stdout.strip()).parent.parent).as_posix()
            for p in Path(where.stdout.strip()).parent.rglob("*.py")
        )
        in_repo = sorted(
            p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "exporter").rglob("*.py")
        )
        assert installed == in_repo
        check = config_check(
            context / "deploy" / "docker" / "config.yml",
            env=env,
            executable=[str(target / "bin" / "ollama-probe-exporter")],
        )
        assert (check.returncode, check.stderr) == (0, "")
        assert "warning" not in check.stdout
