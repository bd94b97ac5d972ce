#!/usr/bin/env bash
# Runs the main job at 20%, 30% and 50% sparsity with the default settings
# and prints a Markdown table of the perplexities from each report.json.
# Extra arguments go to every run (for example --steps 100).
set -euo pipefail
cd "$(dirname "$0")/.."

for sparsity in 0.2 0.3 0.5; do
  bash scripts/prune.sh --sparsity "$sparsity" --overwrite "$@" >&2
done

python3 - <<'PY'
import json

print("| sparsity | dense | Wanda-sp (per layer) | initial probabilities, top units | policy gradient | params after | step seconds (median) | wall seconds |")
print("|---|---|---|---|---|---|---|---|")
for s in ("20", "30", "50"):
    r = json.load(open(f"out/smollm2-135m-s{s}/report.json"))
    p = r["ppl"]
    print(f"| {r['sparsity']:.1f} | {p['dense']:.2f} | {p['init']:.2f} | {p.get('init_policy', float('nan')):.2f} "
          f"| {p['final']:.2f} | {r['params']['after']:,} of {r['params']['before']:,} "
          f"| {r['step_seconds']:.2f} | {r['wall_seconds']:.0f} |")
PY
