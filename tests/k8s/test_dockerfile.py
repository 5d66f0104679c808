"""Static checks of /Dockerfile with dockerfile-parse, since no Docker engine (or hadolint) is available.

Why: the runtime images must run non-root with no compilers, install the project the way CI does
(``pip install .``), and expose the port the probes and Prometheus use; a build is not needed to see that.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
TARGETS = ("cpu", "cuda")
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cargo|rustc|python3?-dev|libc6?-dev|git)\b")
PACKAGE_INSTALL = re.compile(r"\b(apt-get|apt|apk|yum|dnf|microdnf)\b[^;&|]*\binstall\b")


@dataclass
class Stage:
    """One FROM ... [AS name] block."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def installs_project(run: str) -> bool:
    """True if some command of a RUN line is ``pip install ... .`` (the project itself, as CI does)."""
    for command in re.split(r"&&|\|\||;", run):
        tokens = shlex.split(command)
        if tokens[:2] == ["python", "-m"] or tokens[:2] == ["python3", "-m"]:
            tokens = tokens[2:]
        if tokens[:2] == ["pip", "install"] and "." in tokens[2:]:
            return True
    return False


def parse_stages(path: Path) -> list[Stage]:
    """Stages in file order, with ``${ARG}`` in FROM resolved from the global ARG defaults."""
    parser = DockerfileParser(path=str(path))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instr in parser.structure:
        kind, value = instr["instruction"], instr["value"]
        if kind == "FROM":
            parts = value.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=base))
        elif not stages:
            if kind == "ARG" and "=" in value:
                key, default = value.split("=", 1)
                global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append((kind, value))
    return stages


def lineage(stages: list[Stage], target: str) -> list[Stage]:
    """The target and the in-file stages it is built FROM, base first."""
    by_name = {s.name: s for s in stages}
    chain = [by_name[target]]
    while chain[0].base in by_name:
        chain.insert(0, by_name[chain[0].base])
    return chain


def final_stage_problems(path: Path, target: str) -> list[str]:
    """Why ``target`` would not be an acceptable runtime image (empty list = fine)."""
    stages = parse_stages(path)
    if target not in {s.name for s in stages}:
        return [f"no stage named {target}"]
    chain = lineage(stages, target)
    instrs = [(s.name, k, v) for s in chain for k, v in s.instructions]
    problems = []
    users = [v for _, k, v in instrs if k == "USER"]
    if not users:
        problems.append("no USER: runs as root")
    elif users[-1].split(":")[0] in {"root", "0"}:
        problems.append(f"final USER is {users[-1]}")
    for stage, k, v in instrs:
        if k == "RUN" and PACKAGE_INSTALL.search(v) and BUILD_TOOLS.search(v):
            problems.append(f"stage {stage} installs build tools: {v[:80]}")
    if ":latest" in chain[0].base or ":" not in chain[0].base:
        problems.append(f"base image not pinned: {chain[0].base}")
    exposed = {p.split("/")[0] for _, k, v in instrs if k == "EXPOSE" for p in v.split()}
    if exposed != {str(Settings.model_fields["web_port"].default)}:
        problems.append(f"EXPOSE {sorted(exposed)} is not the web port")
    return problems


def test_runtime_targets_are_clean() -> None:
    for target in TARGETS:
        assert final_stage_problems(DOCKERFILE, target) == [], target


def test_cpu_is_the_default_target_and_entrypoint_is_the_console_script() -> None:
    stages = parse_stages(DOCKERFILE)
    assert stages[-1].name == "cpu", "a plain `docker build .` should give the CPU image"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for target in TARGETS:
        entry = [v for k, v in lineage(stages, target)[-1].instructions if k == "ENTRYPOINT"]
        assert entry and shlex.split(entry[-1].strip("[]").replace(",", " "))[0] in scripts


def test_install_mirrors_ci_and_venv_comes_from_builders() -> None:
    stages = parse_stages(DOCKERFILE)
    by_name = {s.name: s for s in stages}
    for target in TARGETS:
        copies = [v for k, v in by_name[target].instructions if k == "COPY" and "--from=" in v]
        sources = {re.search(r"--from=(\S+)", v).group(1) for v in copies}  # type: ignore[union-attr]
        assert sources, f"{target} gets no virtualenv from a builder"
        for src in sources:
            runs = [v for s in lineage(stages, src) for k, v in s.instructions if k == "RUN"]
            assert any(installs_project(r) for r in runs), f"{src} does not `pip install .`"
            assert not any("-e ." in r or "--editable" in r for r in runs), "runtime needs a real install"


def test_cuda_build_targets_cuda12() -> None:
    stages = {s.name: s for s in parse_stages(DOCKERFILE)}
    runs = " ".join(v for s in lineage(list(stages.values()), "builder-cuda") for k, v in s.instructions if k == "RUN")
    match = re.search(r"--constraint\s+(\S+)", runs)
    assert match, "builder-cuda must pin onnxruntime-gpu to a CUDA 12 build"
    pins = (REPO / match.group(1)).read_text()
    version = re.search(r"^onnxruntime-gpu==(\d+)\.(\d+)", pins, re.M)
    assert version and (int(version.group(1)), int(version.group(2))) < (1, 27), "ORT >= 1.27 wheels are CUDA 13"
    assert "onnxruntime-gpu[cuda,cudnn]" in runs, "CUDA/cuDNN libraries come as nvidia-*-cu12 wheels"
    cuda_runs = " ".join(v for k, v in stages["cuda"].instructions if k == "RUN")
    assert "ldconfig" in cuda_runs, "the wheels' libraries must be on the loader path"


def test_build_context_carries_every_package() -> None:
    """The ignore file allow-lists paths; the packages pyproject includes must all be allowed."""
    ignore = (REPO / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].split("/")[0] for line in ignore if line.startswith("!")}
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in include}
    assert packages <= allowed
    assert {"pyproject.toml", "README.md", "docker"} <= allowed
    stages = parse_stages(DOCKERFILE)
    default_artifacts = next(v for s in stages for k, v in s.instructions if k == "ARG" and v.startswith("ARTIFACTS="))
    artifacts = REPO / default_artifacts.split("=", 1)[1]
    assert (artifacts / "models").is_dir() and (artifacts / "catalog").is_dir()


BAD_DOCKERFILE = """\
FROM python:3.11-slim AS builder
RUN pip install .

FROM python:latest AS cpu
RUN apt-get update && apt-get install -y build-essential
COPY --from=builder /opt/venv /opt/venv
USER root
EXPOSE 8080
"""


def test_checker_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(BAD_DOCKERFILE)
    problems = " | ".join(final_stage_problems(path, "cpu"))
    for expected in ("final USER is root", "installs build tools", "not pinned", "not the web port"):
        assert expected in problems
    assert final_stage_problems(path, "cuda") == ["no stage named cuda"]
    path.write_text(BAD_DOCKERFILE.replace("USER root\n", ""))
    assert "no USER: runs as root" in final_stage_problems(path, "cpu")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("pip install . && pip check", True),
        ('pip install --constraint c.txt . "onnxruntime-gpu[cuda,cudnn]"', True),
        ("pip install -r requirements.txt", False),
        ("pip install ./wheels/x.whl", False),
        ("python -m pip install --no-deps .", True),
    ],
)
def test_installs_project(command: str, expected: bool) -> None:
    assert installs_project(command) is expected
