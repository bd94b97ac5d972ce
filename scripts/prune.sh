#!/usr/bin/env bash
# The main job on real input: prunes SmolLM2-135M-Instruct (GGUF) at 30%
# sparsity with the default settings. It calibrates on Brown corpus files and
# evaluates on a disjoint set: the first file of each of the 15 categories,
# ca01 ... cr01. Outputs go to out/smollm2-135m-s30 unless
# --out is given. Extra arguments go to the `prune` example.
set -euo pipefail
cd "$(dirname "$0")/.."
source <(bash scripts/setup.sh --model --corpus)

eval_files=()
calib_files=()
for f in "$PGPRUNE_BROWN"/c[a-r][0-9][0-9]; do
  case "$(basename "$f")" in
    c?01) eval_files+=("$f") ;;
    *) calib_files+=("$f") ;;
  esac
done

sparsity=0.3
out=out/smollm2-135m-s30
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sparsity) sparsity=$2; out=out/smollm2-135m-s$(echo "$2" | awk '{printf "%d", $1 * 100 + 0.5}'); shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

cargo run --release --example prune -- \
  --model "$PGPRUNE_MODEL" \
  --calib "${calib_files[@]}" \
  --eval "${eval_files[@]}" \
  --sparsity "$sparsity" \
  --out "$out" \
  "${args[@]}"
