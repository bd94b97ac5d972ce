#!/usr/bin/env bash
# Installs what the tests need (libtorch, the SmolLM2-135M GGUF and the Brown
# corpus, all verified by checksum) and runs the whole test suite.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
source <(bash scripts/setup.sh --model --corpus)
cargo test --release "$@"
