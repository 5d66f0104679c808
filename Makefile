# The two entry points of the README: `make demo` and `make test`. Both build the virtualenv from
# pyproject.toml first, so a fresh clone needs nothing but Python 3.11, Java 17, Maven and Go.
# The venv takes the `train` extra (torch, optimum-onnx): the demo and the tests export the embedding
# model and check ONNX against PyTorch. The worker's own install (`pip install .`) needs no torch.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLM_STAMP := $(VENV)/.installed-llm
# llama-cpp-python compiles llama.cpp once (then pip's wheel cache serves it). A portable x86-64 (AVX2) build:
# the native one uses AMX/AVX-512 paths that fault in some sandboxes and VMs that report those CPU flags.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

.PHONY: demo test lint bench lock browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip uninstall --quiet --yes onnxruntime-gpu 2>/dev/null || true  # venvs from before the cpu extra
	$(BIN)/pip install --quiet -e '.[dev,train,cpu]'
	touch $(STAMP)

# The tests also run the LLM teacher against a real local server (the `llm` extra); the demo does not need it.
$(LLM_STAMP): $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip install --quiet -e '.[llm]'
	touch $(LLM_STAMP)

demo: $(STAMP)
	$(BIN)/vitrine demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The preview page's browser test drives Debian's Chromium through chromedriver (CI runs as root with apt).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -q && apt-get install -y -q chromium chromium-driver)

test: lint browser $(LLM_STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.session_worker

# The images' lock files (Dockerfile): one per ONNX Runtime extra, for the images' Python and platform.
lock: $(STAMP)
	$(BIN)/pip install --quiet uv
	for extra in cpu cuda12; do \
		$(BIN)/uv pip compile pyproject.toml --extra $$extra --python-version 3.11 \
			--python-platform x86_64-manylinux_2_28 --no-header --quiet -o docker/requirements-$$extra.lock; \
	done
