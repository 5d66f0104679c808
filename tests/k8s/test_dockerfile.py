"""Static checks of /Dockerfile with dockerfile-parse, since no Docker engine (or hadolint) is available.

Why: the runtime images must run non-root with no compilers and without the training stack (torch),
install the project the way CI does (``pip install .``), carry the exported embedder and the student
model where the settings point, and expose the port the probes and Prometheus use; a build is not
needed to see that.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from streams.generator.setup import load_generator_parts
from streams.runtime.settings import FIELDS, Settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
TARGETS = ("cpu", "cuda")
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cargo|rustc|python3?-dev|libc6?-dev|git)\b")
PACKAGE_INSTALL = re.compile(r"\b(apt-get|apt|apk|yum|dnf|microdnf)\b[^;&|]*\binstall\b")
# The offline/training stack (pyproject's `train` extra): never in a runtime image (common rule: the
# worker's install must not need torch).
TRAIN_INSTALL = re.compile(
    r"\bpip\b[^;&|]*\binstall\b[^;&|]*(\[[^\]]*\btrain\b[^\]]*\]|\btorch\b|\btransformers\b|\boptimum)"
)
# What may be copied out of a stage that has the training stack: exported files, not an environment.
ENVIRONMENT_PATHS = re.compile(r"^/(opt/venv|usr|root)?/?$|site-packages|/opt/venv/")


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


def copy_paths(value: str) -> tuple[str | None, list[str], str]:
    """(``--from`` stage or None, sources, destination) of a COPY instruction's value."""
    tokens = shlex.split(value)
    source = next((tok.split("=", 1)[1] for tok in tokens if tok.startswith("--from=")), None)
    paths = [tok for tok in tokens if not tok.startswith("--")]
    return source, paths[:-1], paths[-1]


def installs_training_stack(stages: list[Stage], name: str) -> bool:
    """Whether ``name`` or a stage it is built FROM installs torch or the train extra."""
    return any(k == "RUN" and TRAIN_INSTALL.search(v) for s in lineage(stages, name) for k, v in s.instructions)


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
    for stage, k, v in instrs:
        if k == "RUN" and TRAIN_INSTALL.search(v):
            problems.append(f"stage {stage} installs the training stack: {v[:80]}")
        if k == "COPY":
            source, paths, _ = copy_paths(v)
            if source is not None and source in {s.name for s in stages} and installs_training_stack(stages, source):
                leaked = [p for p in paths if ENVIRONMENT_PATHS.search(p)]
                if leaked:
                    problems.append(f"stage {stage} copies an environment with torch from {source}: {leaked}")
    exposed = {p.split("/")[0] for _, k, v in instrs if k == "EXPOSE" for p in v.split()}
    if exposed != {str(FIELDS["web_port"].default)}:
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


def env_values(stages: list[Stage]) -> dict[str, str]:
    """``ENV a=1 b=2`` of every stage, later stages winning (enough for this file's single runtime chain)."""
    values: dict[str, str] = {}
    for stage in stages:
        for k, v in stage.instructions:
            if k == "ENV":
                values.update(tok.split("=", 1) for tok in shlex.split(v) if "=" in tok)
    return values


def test_embedder_is_exported_in_its_own_stage_and_only_its_files_are_copied() -> None:
    stages = parse_stages(DOCKERFILE)
    exports = [
        (s.name, re.search(r"vitrine export-embedder --out (\S+)", v))
        for s in stages
        for k, v in s.instructions
        if k == "RUN" and "export-embedder" in v
    ]
    assert len(exports) == 1, "one stage exports the embedder"
    ((stage, match),) = exports
    assert match and installs_training_stack(stages, stage), "the export needs the train extra"
    exported = match.group(1).rstrip("/")
    for target in TARGETS:
        chain = lineage(stages, target)
        copies = [copy_paths(v) for s in chain for k, v in s.instructions if k == "COPY"]
        into = [
            dest.rstrip("/")
            for src, paths, dest in copies
            if src == stage and [p.rstrip("/") for p in paths] == [exported]
        ]
        assert into, f"{target} lacks the exported embedder"
        assert env_values(chain)["VITRINE_EMBEDDER_DIR"] == into[0], "the catalog job must find it"
        assert target not in {s.name for s in lineage(stages, stage)}


def test_student_model_dir_is_copied_where_the_settings_point() -> None:
    student = REPO / "models" / "student"
    assert student.is_dir(), "models/student is shipped in the repository"
    stages = parse_stages(DOCKERFILE)
    for target in TARGETS:
        chain = lineage(stages, target)
        copies = [copy_paths(v) for s in chain for k, v in s.instructions if k == "COPY"]
        dests = [dest.rstrip("/") for src, paths, dest in copies if src is None and paths == ["models/student/"]]
        assert dests, f"{target} does not COPY models/student/"
        assert env_values(chain)["VITRINE_MODEL_DIR"] == dests[0]
    ignore = (REPO / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!models/**" in ignore, "the build context must carry the model files"


def test_cuda_build_targets_cuda12() -> None:
    stages = {s.name: s for s in parse_stages(DOCKERFILE)}
    runs = " ".join(v for s in lineage(list(stages.values()), "builder-cuda") for k, v in s.instructions if k == "RUN")
    match = re.search(r"-r\s+(\S+\.lock)", runs)
    assert match, "builder-cuda must install from a lock file"
    pins = (REPO / match.group(1)).read_text()
    version = re.search(r"^onnxruntime-gpu==(\d+)\.(\d+)", pins, re.M)
    assert version and (int(version.group(1)), int(version.group(2))) < (1, 27), "ORT >= 1.27 wheels are CUDA 13"
    assert re.search(r"^nvidia-cudnn-cu12==9\.", pins, re.M), "cuDNN 9 for CUDA 12 comes as a nvidia-*-cu12 wheel"
    assert not re.search(r"^onnxruntime==", pins, re.M), "never both runtimes in one environment"
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
    artifacts = _default_artifacts()
    assert (artifacts / "models").is_dir() and (artifacts / "catalog").is_dir()


def _default_artifacts() -> Path:
    stages = parse_stages(DOCKERFILE)
    default = next(v for s in stages for k, v in s.instructions if k == "ARG" and v.startswith("ARTIFACTS="))
    return REPO / default.split("=", 1)[1]


def test_generator_starts_on_the_image_without_a_baked_catalog() -> None:
    """The default image's /catalog holds only the placeholder: the generator must come up (control arm)."""
    parts = load_generator_parts(Settings(catalog_dir=_default_artifacts() / "catalog", model_dir=None))
    assert parts.catalog is None and parts.problems


BAD_DOCKERFILE = """\
FROM python:3.11-slim AS builder
RUN pip install .

FROM python:latest AS cpu
RUN apt-get update && apt-get install -y build-essential
COPY --from=builder /opt/venv /opt/venv
USER root
EXPOSE 8080
"""


TORCH_DOCKERFILE = """\
FROM python:3.11-slim AS train
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu ".[train]"

FROM python:3.11-slim AS cpu
COPY --from=train /opt/venv /opt/venv
COPY --from=train /opt/vitrine/embedder/ /opt/vitrine/embedder/
RUN pip install torch==2.13.0
USER 10001
EXPOSE 6066
"""


def test_checker_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(BAD_DOCKERFILE)
    problems = " | ".join(final_stage_problems(path, "cpu"))
    for expected in ("final USER is root", "installs build tools", "not pinned", "not the web port"):
        assert expected in problems
    path.write_text(TORCH_DOCKERFILE)
    problems = " | ".join(final_stage_problems(path, "cpu"))
    assert "copies an environment with torch from train: ['/opt/venv']" in problems
    assert "installs the training stack: pip install torch" in problems
    assert "/opt/vitrine/embedder" not in problems, "exported files may be copied"
    assert final_stage_problems(path, "cuda") == ["no stage named cuda"]
    path.write_text(BAD_DOCKERFILE.replace("USER root\n", ""))
    assert "no USER: runs as root" in final_stage_problems(path, "cpu")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("pip install . && pip check", True),
        ('pip install --constraint c.txt . "onnxruntime-gpu[cuda,cudnn]"', True),
        ("pip install --no-deps -r docker/requirements-cpu.lock && pip install --no-deps .", True),
        ("pip install -r requirements.txt", False),
        ("pip install ./wheels/x.whl", False),
        ("python -m pip install --no-deps .", True),
        ('pip install ".[train]"', False),
    ],
)
def test_installs_project(command: str, expected: bool) -> None:
    assert installs_project(command) is expected


@pytest.mark.parametrize("extra", ["cpu", "cuda12"])
def test_lock_files_satisfy_pyproject(extra: str) -> None:
    """Every runtime dependency of pyproject (and the extra) is pinned in the lock at a version it accepts."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (REPO / "docker" / f"requirements-{extra}.lock").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version.strip())
    for spec in [*project["dependencies"], *project["optional-dependencies"][extra]]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} missing from requirements-{extra}.lock: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req} vs {pins[name]}: run make lock"
    other = {"cpu": "onnxruntime-gpu", "cuda12": "onnxruntime"}[extra]
    assert other not in pins, f"requirements-{extra}.lock carries {other} too"
