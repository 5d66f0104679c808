# The two entry points of the README: `make demo` and `make test`. Both build the virtualenv from
# pyproject.toml first, so a fresh clone needs nothing but Python 3.11, Java 17, Maven and Go.
# The venv takes the `train` extra (torch, optimum-onnx): the demo and the tests export the embedding
# model and check ONNX against PyTorch. The worker's own install (`pip install .`) needs no torch.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,train]'
	touch $(STAMP)

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

test: lint browser
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.session_worker
