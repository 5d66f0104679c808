"""ONNX Runtime execution providers from one setting (``VITRINE_ONNX_PROVIDERS``), shared by every session.

``auto`` means CUDA when it can really run here, CPU otherwise. onnxruntime-gpu lists the CUDA provider
even on a machine without a driver or CUDA libraries, and then falls back to CPU with an error-level log
line per session; probing the provider library once keeps that noise out and says why in one line.
"""

from __future__ import annotations

import ctypes
import logging
import os
from functools import cache
from importlib import metadata
from pathlib import Path

from streams.contracts.errors import VitrineError

log = logging.getLogger(__name__)

RUNTIME_EXTRAS = "pip install 'vitrine[cpu]' on CPU machines, 'vitrine[cuda12]' or 'vitrine[cuda13]' on GPU machines"


class RuntimeMissing(VitrineError, ImportError):
    """No usable ONNX Runtime in this environment: none installed, or two that overwrite each other."""


def installed_runtimes() -> list[str]:
    """The ONNX Runtime distributions installed here; ``onnxruntime`` and ``onnxruntime-gpu`` share one package
    directory, so with both the one installed last has silently replaced files of the other."""
    found = []
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def _check_one_runtime() -> None:
    runtimes = installed_runtimes()
    if len(runtimes) > 1:
        raise RuntimeMissing(f"both {' and '.join(runtimes)} are installed: keep one ({RUNTIME_EXTRAS})")


_check_one_runtime()
try:
    import onnxruntime as ort
except ModuleNotFoundError as exc:
    raise RuntimeMissing(f"no ONNX Runtime installed: {RUNTIME_EXTRAS}") from exc

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class ProviderError(VitrineError):
    """The providers setting names something this onnxruntime build cannot run."""


@cache
def cuda_usable() -> bool:
    """Whether the CUDA provider library loads with all its dependencies (CUDA, cuDNN, the driver)."""
    if CUDA not in ort.get_available_providers():
        return False
    try:
        ort.preload_dlls()  # CUDA/cuDNN from nvidia-* wheels, when that is how they were installed
    except Exception as exc:  # noqa: BLE001 - a failed preload only means the system libraries must do
        log.debug("onnxruntime.preload_dlls failed: %s", exc)
    library = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        log.info("CUDA execution provider not usable here (%s); using CPU", exc)
        return False
    return True


def resolve_providers(spec: str) -> list[str]:
    """``auto`` -> CUDA (then CPU) if usable, else CPU; or a comma list, checked against this build."""
    if spec.strip().lower() == "auto":
        return [CUDA, CPU] if cuda_usable() else [CPU]
    wanted = [name.strip() for name in spec.split(",") if name.strip()]
    if not wanted:
        raise ProviderError("onnx providers: empty list (use 'auto' or names such as CPUExecutionProvider)")
    unknown = [name for name in wanted if name not in ort.get_all_providers()]
    if unknown:
        raise ProviderError(f"onnx providers: unknown {', '.join(unknown)}")
    available = set(ort.get_available_providers())
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ProviderError(
            f"onnx providers: {', '.join(missing)} not in this onnxruntime build "
            f"(available: {', '.join(ort.get_available_providers())})"
        )
    return wanted


def session_options(intra_op_threads: int | None = None) -> ort.SessionOptions:
    """Options for a latency-sensitive session that shares its cores: no spinning threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def create_session(model_path: Path, providers: str, intra_op_threads: int | None = None) -> ort.InferenceSession:
    """An inference session on the resolved providers; logs the provider actually used."""
    wanted = resolve_providers(providers)
    session = ort.InferenceSession(str(model_path), session_options(intra_op_threads), providers=wanted)
    used = session.get_providers()[0]
    if used != wanted[0]:
        log.warning("%s: wanted %s, running on %s", model_path.name, wanted[0], used)
    else:
        log.info("%s: running on %s", model_path.name, used)
    return session
