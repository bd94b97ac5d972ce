#!/usr/bin/env bash
# Times one pruning step of SmolLM2-135M in pgprune (benches/step.rs) and in
# the PyTorch reference (scripts/bench/reference_step.py) with the same
# batch, sequence length, K, sparsity, dtype and thread count, then prints
# the JSON reports and the ratios. Each dtype runs in its own process so
# that peak memory is per dtype.
#
# pgprune runs as its CLI does, with freed memory kept for reuse
# (pgprune::runtime::retain_freed_memory). The reference runs twice: as
# shipped, and with the same allocator settings, so the second ratio
# compares the two implementations on equal allocator terms.
#
#   scripts/bench/step_vs_reference.sh [THREADS] [REPEATS]
#
# Defaults: THREADS = number of CPUs, REPEATS = 5. BATCH, SEQ_LEN, K,
# SPARSITY and DTYPES may be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
source <(bash scripts/setup.sh --model --python-ref)

THREADS=${1:-$(nproc)}
REPEATS=${2:-5}
BATCH=${BATCH:-8}
SEQ_LEN=${SEQ_LEN:-128}
K=${K:-2}
SPARSITY=${SPARSITY:-0.5}
DTYPES=${DTYPES:-"f32 bf16"}
PYTHON=$VIRTUAL_ENV/bin/python
COMMON=(--batch "$BATCH" --seq-len "$SEQ_LEN" --k "$K" --sparsity "$SPARSITY" --threads "$THREADS" --repeats "$REPEATS")

cargo build --release --bench step >&2
echo "load before: $(uptime)" >&2
for dtype in $DTYPES; do
  rust=$(cargo bench --quiet --bench step -- --model "$PGPRUNE_MODEL" --dtype "$dtype" "${COMMON[@]}" | grep '^{')
  python=$("$PYTHON" scripts/bench/reference_step.py --model "$PGPRUNE_MODEL" --dtype "$dtype" "${COMMON[@]}" | grep '^{')
  retained=$("$PYTHON" scripts/bench/reference_step.py --model "$PGPRUNE_MODEL" --dtype "$dtype" "${COMMON[@]}" --retain-freed-memory | grep '^{')
  echo "$rust"
  echo "$python"
  echo "$retained"
  "$PYTHON" - "$rust" "$python" "$retained" <<'PY'
import json, sys
ours, ref, ref_retained = (json.loads(a) for a in sys.argv[1:4])
print(json.dumps({
    "dtype": ours["dtype"],
    "step_ratio_pgprune_over_pytorch": ours["step_seconds"] / ref["step_seconds"],
    "step_ratio_pgprune_over_pytorch_same_allocator": ours["step_seconds"] / ref_retained["step_seconds"],
    "step_cpu_ratio_pgprune_over_pytorch": ours["step_cpu_seconds"] / ref["step_cpu_seconds"],
    "dense_tokens_per_second": {"pgprune": ours["dense_tokens_per_second"], "pytorch": ref["dense_tokens_per_second"]},
    "dense_throughput_ratio_pgprune_over_pytorch": ours["dense_tokens_per_second"] / ref["dense_tokens_per_second"],
    "peak_rss_mib": {"pgprune": ours["peak_rss_mib"], "pytorch": ref["peak_rss_mib"]},
    "peak_rss_after_load_mib": {"pgprune": ours["peak_rss_after_load_mib"], "pytorch": ref["peak_rss_after_load_mib"]},
    "rss_before_load_mib": {"pgprune": ours["rss_before_load_mib"], "pytorch": ref["rss_before_load_mib"]},
    "rss_after_load_mib_pgprune": ours["rss_after_load_mib"],
    "weights_mib": {"pgprune": ours["weights_mib"], "pytorch": ref["weights_mib"]},
    "policy_update_share_of_step": ours["policy_update_share"],
}))
PY
done
echo "load after: $(uptime)" >&2
