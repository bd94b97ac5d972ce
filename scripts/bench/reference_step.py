"""Times one pruning step done the reference's way, in PyTorch.

The model is Hugging Face `transformers`' LlamaForCausalLM loaded from a GGUF
file. Masks are multiplied into the input of every `o_proj` (the attention
output, per KV group) and every `down_proj` (the MLP activation, per channel)
by forward pre-hooks, and the K masks are evaluated by K sequential forward
passes, as the policy-gradient reference implementation does.

Prints one JSON object with the median step time, the median dense forward
throughput and the peak resident memory of the process.
"""

import argparse
import ctypes
import json
import os
import resource
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="path to a .gguf file")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--k", type=int, default=2, help="masks per step")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--retain-freed-memory",
        action="store_true",
        help="apply the glibc allocator settings of pgprune's retain_freed_memory, for a like-for-like comparison",
    )
    return p.parse_args()


# glibc mallopt parameters and the values pgprune::runtime::retain_freed_memory sets.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
HEAP_ALLOCATION_LIMIT, NEVER_TRIM = 1 << 30, 2**31 - 1


def retain_freed_memory():
    libc = ctypes.CDLL("libc.so.6")
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, HEAP_ALLOCATION_LIMIT)
        and libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM)
        and libc.mallopt(M_ARENA_MAX, 1)
    )


def status_mib(field):
    """Reads a memory field of /proc/self/status (VmHWM, VmRSS) in MiB, or returns None off Linux."""
    try:
        with open("/proc/self/status") as status:
            line = next(l for l in status if l.startswith(field + ":"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


def peak_rss_mib():
    return status_mib("VmHWM")


def reset_peak_rss():
    """Resets VmHWM to the current resident size and returns whether Linux accepted it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def weights_mib(model):
    """Returns the size of the weights in MiB, counting tied tensors (embedding and LM head) once."""
    sizes = {t.data_ptr(): t.numel() * t.element_size() for t in model.state_dict().values()}
    return sum(sizes.values()) / 2**20


def load(path, dtype):
    folder, name = os.path.split(os.path.abspath(path))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model.to(dtype).eval()


class MaskHooks:
    """Forward pre-hooks that scale o_proj and down_proj inputs by the current masks."""

    def __init__(self, model):
        cfg = model.config
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.group_size = cfg.num_attention_heads // cfg.num_key_value_heads
        self.heads = None
        self.channels = None
        for i, layer in enumerate(model.model.layers):
            layer.self_attn.o_proj.register_forward_pre_hook(self._attention_hook(i))
            layer.mlp.down_proj.register_forward_pre_hook(self._mlp_hook(i))

    def _attention_hook(self, layer):
        def hook(_module, args):
            scale = self.heads[layer].repeat_interleave(self.group_size * self.head_dim)
            return (args[0] * scale.to(args[0].dtype),)

        return hook

    def _mlp_hook(self, layer):
        def hook(_module, args):
            return (args[0] * self.channels[layer].to(args[0].dtype),)

        return hook


def sample_masks(cfg, keep, generator):
    layers = cfg.num_hidden_layers
    heads = torch.bernoulli(torch.full((layers, cfg.num_key_value_heads), keep), generator=generator)
    channels = torch.bernoulli(torch.full((layers, cfg.intermediate_size), keep), generator=generator)
    return heads, channels


def step(model, hooks, tokens, k, keep, generator):
    losses = []
    with torch.no_grad():
        for _ in range(k):
            hooks.heads, hooks.channels = sample_masks(model.config, keep, generator)
            losses.append(model(tokens, labels=tokens).loss.item())
    return losses


def main():
    args = parse_args()
    retained = retain_freed_memory() if args.retain_freed_memory else False
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    baseline = status_mib("VmRSS")
    model = load(args.model, dtype)
    weights = weights_mib(model)
    load_peak = peak_rss_mib()
    if args.retain_freed_memory:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    step_peak_measured = reset_peak_rss()
    tokens = torch.randint(0, model.config.vocab_size, (args.batch, args.seq_len))
    generator = torch.Generator().manual_seed(args.seed)

    dense_seconds = []
    with torch.no_grad():
        model(tokens)  # warm-up
        for _ in range(args.repeats):
            start = time.perf_counter()
            model(tokens, labels=tokens)
            dense_seconds.append(time.perf_counter() - start)

    hooks = MaskHooks(model)
    keep = 1.0 - args.sparsity
    step(model, hooks, tokens, args.k, keep, generator)  # warm-up
    step_seconds = []
    step_cpu_seconds = []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        step(model, hooks, tokens, args.k, keep, generator)
        step_seconds.append(time.perf_counter() - start)
        step_cpu_seconds.append(time.process_time() - cpu_start)

    dense = statistics.median(dense_seconds)
    print(json.dumps({
        "implementation": "transformers",
        "retain_freed_memory": retained,
        "torch": torch.__version__,
        "dtype": args.dtype,
        "threads": args.threads,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "k": args.k,
        "sparsity": args.sparsity,
        "repeats": args.repeats,
        "step_seconds": statistics.median(step_seconds),
        "step_cpu_seconds": statistics.median(step_cpu_seconds),
        "dense_forward_seconds": dense,
        "dense_tokens_per_second": args.batch * args.seq_len / dense,
        "peak_rss_mib": max(load_peak or 0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "weights_mib": weights,
        "rss_before_load_mib": baseline,
        "peak_rss_after_load_mib": peak_rss_mib() if step_peak_measured else None,
        "load_peak_rss_mib": load_peak,
    }))


if __name__ == "__main__":
    main()
