#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests (no cluster, no Docker, no network beyond the Go
# module proxy for the one-time kustomize install).
#
#   k8s/validate.sh                 render both overlays and run the pytest suite in tests/k8s
#   k8s/validate.sh build DIR       render one kustomization to stdout (used by the tests)
#   k8s/validate.sh kustomize       install kustomize if missing; print its path
#
# kustomize is pinned and installed with `go install` into .cache/bin (ignored by git via
# .cache/.gitignore). Set KUSTOMIZE=/path/to/kustomize to use another binary of the same version.
set -euo pipefail

KUSTOMIZE_VERSION="v5.8.1"   # go >= 1.24; keep in step with tests/k8s/conftest.py
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${VITRINE_CACHE_DIR:-$ROOT/.cache}"
BIN="$CACHE/bin"

ensure_kustomize() {
  if [[ -n "${KUSTOMIZE:-}" ]]; then
    echo "$KUSTOMIZE"
    return
  fi
  local exe="$BIN/kustomize-$KUSTOMIZE_VERSION"
  if [[ ! -x "$exe" ]]; then
    command -v go >/dev/null || { echo "validate.sh: need Go >= 1.24 to install kustomize $KUSTOMIZE_VERSION" >&2; exit 3; }
    mkdir -p "$BIN"
    [[ -f "$CACHE/.gitignore" ]] || printf '*\n' > "$CACHE/.gitignore"
    local tmp
    tmp="$(mktemp -d "$BIN/install.XXXXXX")"
    echo "validate.sh: installing kustomize $KUSTOMIZE_VERSION into $BIN (one time)" >&2
    GOBIN="$tmp" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
    mv "$tmp/kustomize" "$exe"
    rmdir "$tmp"
  fi
  echo "$exe"
}

case "${1:-all}" in
  kustomize)
    ensure_kustomize
    ;;
  build)
    [[ $# -eq 2 ]] || { echo "usage: $0 build DIR" >&2; exit 2; }
    "$(ensure_kustomize)" build "$2"
    ;;
  all)
    ensure_kustomize >/dev/null
    PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
    [[ -x "$PYTHON" ]] || PYTHON=python3
    cd "$ROOT"
    exec "$PYTHON" -m pytest -q tests/k8s
    ;;
  *)
    echo "usage: $0 [all | build DIR | kustomize]" >&2
    exit 2
    ;;
esac
