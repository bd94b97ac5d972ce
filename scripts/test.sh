#!/usr/bin/env bash
# Installs what the tests need (libtorch, the SmolLM2-135M GGUF and the Brown
# corpus, all verified by checksum) and runs the whole test suite.
# Extra arguments go to `cargo test`. The last line sums the results of
# every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source <(bash scripts/setup.sh --model --corpus)

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
