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
# SPARSITY, DTYPES and ROUNDS may be set in the environment. With ROUNDS =
# N, each round runs pgprune and then both reference variants, and the
# summary compares the medians of the N rounds, so that drift during the
# run affects both sides.
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
ROUNDS=${ROUNDS:-1}
if ! [[ $ROUNDS =~ ^[1-9][0-9]*$ ]]; then
  echo "invalid ROUNDS=$ROUNDS: set a whole number of rounds, 1 or more" >&2
  exit 2
fi
PYTHON=$VIRTUAL_ENV/bin/python
COMMON=(--batch "$BATCH" --seq-len "$SEQ_LEN" --k "$K" --sparsity "$SPARSITY" --threads "$THREADS" --repeats "$REPEATS")

cargo build --release --bench step >&2
echo "load before: $(uptime)" >&2
for dtype in $DTYPES; do
  rust=() python=() retained=()
  for _round in $(seq "$ROUNDS"); do
    rust+=("$(cargo bench --quiet --bench step -- --model "$PGPRUNE_MODEL" --dtype "$dtype" "${COMMON[@]}" | grep '^{')")
    python+=("$("$PYTHON" scripts/bench/reference_step.py --model "$PGPRUNE_MODEL" --dtype "$dtype" "${COMMON[@]}" | grep '^{')")
    retained+=("$("$PYTHON" scripts/bench/reference_step.py --model "$PGPRUNE_MODEL" --dtype "$dtype" "${COMMON[@]}" --retain-freed-memory | grep '^{')")
    printf '%s\n' "${rust[-1]}" "${python[-1]}" "${retained[-1]}"
  done
  "$PYTHON" - "$ROUNDS" "${rust[@]}" "${python[@]}" "${retained[@]}" <<'PY'
import json, statistics, sys
rounds = int(sys.argv[1])
reports = [json.loads(a) for a in sys.argv[2:]]
ours, ref, ref_retained = (reports[i * rounds:(i + 1) * rounds] for i in range(3))

# A field is null where a run could not measure it (for example, no
# /proc/self/clear_refs), and stays null only if every round lacks it.
def median(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None

def peak(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return max(values) if values else None

def ratio(ours_value, ref_value):
    return None if ours_value is None or ref_value is None else ours_value / ref_value

print(json.dumps({
    "dtype": ours[0]["dtype"],
    "rounds": rounds,
    "step_ratio_pgprune_over_pytorch": ratio(median(ours, "step_seconds"), median(ref, "step_seconds")),
    "step_ratio_per_round": [ratio(o["step_seconds"], r["step_seconds"]) for o, r in zip(ours, ref)],
    "step_ratio_pgprune_over_pytorch_same_allocator": ratio(median(ours, "step_seconds"), median(ref_retained, "step_seconds")),
    "step_cpu_ratio_pgprune_over_pytorch": ratio(median(ours, "step_cpu_seconds"), median(ref, "step_cpu_seconds")),
    "dense_tokens_per_second": {"pgprune": median(ours, "dense_tokens_per_second"), "pytorch": median(ref, "dense_tokens_per_second")},
    "dense_throughput_ratio_pgprune_over_pytorch": ratio(median(ours, "dense_tokens_per_second"), median(ref, "dense_tokens_per_second")),
    "peak_rss_mib": {"pgprune": peak(ours, "peak_rss_mib"), "pytorch": peak(ref, "peak_rss_mib")},
    "peak_rss_after_load_mib": {"pgprune": peak(ours, "peak_rss_after_load_mib"), "pytorch": peak(ref, "peak_rss_after_load_mib")},
    "rss_before_load_mib": {"pgprune": median(ours, "rss_before_load_mib"), "pytorch": median(ref, "rss_before_load_mib")},
    "rss_after_load_mib_pgprune": median(ours, "rss_after_load_mib"),
    "weights_mib": {"pgprune": ours[0]["weights_mib"], "pytorch": ref[0]["weights_mib"]},
    "policy_update_share_of_step": median(ours, "policy_update_share"),
    "policy_update_max_seconds": peak(ours, "policy_update_max_seconds"),
}))
PY
done
echo "load after: $(uptime)" >&2
