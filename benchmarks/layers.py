"""Benchmark single transformer layers other than GPT-2's, forward + backward on the CPU, against the
same layer of transformers in PyTorch eager mode (float32, eval, no dropout), in one run:

  encoder    cards/BERTLayer.card (post-LN, exact GELU, padding mask)  vs transformers' BertLayer
  decoder    cards/BARTDecoderLayer.card (post-LN, causal self-attention, cross-attention over an
             encoder output, exact GELU)                               vs transformers' BartDecoderLayer

Each step runs the forward and the backward with a fixed output gradient, and computes the gradients
of every parameter and of the layer's real inputs on both sides (PyTorch: inputs with requires_grad,
grads set to None each step). Both start from the same random weights; before timing, the script
checks that the card's output and every gradient agree with PyTorch's (float32, max|Δ|/max|ref| ≤
1e-4). The two take turns round-robin so machine noise hits both alike, a turn being 1 + --burst
steps back to back; the report gives the medians of the steady steps, generated / pytorch, and the
same ratio for the first step of each turn (after idle). The generated module is compiled in memory
from the card (cardgen.load), called with a workspace dict as benchmarks/gpt2_step.py does.

Run it from the repository root (torch, transformers and threadpoolctl installed):

    python benchmarks/layers.py [--threads N] [--steps S] [--size base|small] [--only encoder|decoder] [--no-shards]

With --threads N > 1 the generated layer runs as cardgen.Sharded(module, N): the batch cut into N shards,
each on a thread of its own with one BLAS thread; --no-shards runs it as one call instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import cardgen

# name -> (D, H, D_f, T, T_z, B): "base" is BERT-base's / BART-base's layer at 128 tokens, batch 4
SIZES = {"base": (768, 12, 3072, 128, 128, 4), "small": (256, 4, 1024, 128, 96, 8)}
TOLERANCE = 1e-4
SHARDS = 1  # --threads N: the generated layer runs as cardgen.Sharded(module, N) unless --no-shards

# card parameter -> (HF tensor of the layer, transposed: nn.Linear keeps out × in)
BERT = {"W_q": "attention.self.query.weight", "b_q": "attention.self.query.bias",
        "W_k": "attention.self.key.weight", "b_k": "attention.self.key.bias",
        "W_v": "attention.self.value.weight", "b_v": "attention.self.value.bias",
        "W_o": "attention.output.dense.weight", "b_o": "attention.output.dense.bias",
        "gamma_1": "attention.output.LayerNorm.weight", "beta_1": "attention.output.LayerNorm.bias",
        "W_1": "intermediate.dense.weight", "b_1": "intermediate.dense.bias",
        "W_2": "output.dense.weight", "b_2": "output.dense.bias",
        "gamma_2": "output.LayerNorm.weight", "beta_2": "output.LayerNorm.bias"}
BART_ATTENTION = {"W_q": "q_proj.weight", "b_q": "q_proj.bias", "W_k": "k_proj.weight", "b_k": "k_proj.bias",
                  "W_v": "v_proj.weight", "b_v": "v_proj.bias", "W_o": "out_proj.weight", "b_o": "out_proj.bias"}
BART = {**{card: f"self_attn.{hf}" for card, hf in BART_ATTENTION.items()},
        **{f"{card}_2": f"encoder_attn.{hf}" for card, hf in BART_ATTENTION.items()},
        "gamma_1": "self_attn_layer_norm.weight", "beta_1": "self_attn_layer_norm.bias",
        "gamma_2": "encoder_attn_layer_norm.weight", "beta_2": "encoder_attn_layer_norm.bias",
        "W_1": "fc1.weight", "b_1": "fc1.bias", "W_2": "fc2.weight", "b_2": "fc2.bias",
        "gamma_3": "final_layer_norm.weight", "beta_3": "final_layer_norm.bias"}


def randomize(layer):
    """Weights at a scale that keeps attention far from uniform and layer norms far from trivial."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "LayerNorm" in name or "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * noise)
            else:
                p.copy_(noise / np.sqrt(p.shape[-1]) if p.ndim == 2 else 0.2 * noise)
    return layer.float().eval()


def card_params(mod, layer, names):
    tensors = dict(layer.named_parameters())
    arrays = {card: tensors[hf].detach().numpy().copy() for card, hf in names.items()}
    return mod.Params(**{k: np.ascontiguousarray(a.T) if a.ndim == 2 else a for k, a in arrays.items()})


def torch_grads(layer, names, inputs):
    tensors = dict(layer.named_parameters())
    grads = {card: tensors[hf].grad.numpy() for card, hf in names.items()}
    grads = {k: g.T if g.ndim == 2 else g for k, g in grads.items()}
    return grads, {k: t.grad.numpy() for k, t in inputs.items()}


class Layer:
    """One benchmark row: the card's module and the transformers layer, with the same weights and inputs."""

    def __init__(self, card, mod, config, params, args, names, hf, hf_call, inputs):
        self.card, self.config, self.params, self.args = card, config, params, args
        self.mod = cardgen.Sharded(mod, SHARDS) if SHARDS > 1 else mod
        self.names, self.hf, self.hf_call, self.inputs = names, hf, hf_call, inputs
        self.workspace = {}
        y, _ = mod.forward(config, params, *args)
        self.dy = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
        self.dy_t = torch.from_numpy(self.dy)

    def generated(self):
        y, cache = self.mod.forward(self.config, self.params, *self.args, workspace=self.workspace)
        grads, input_grads = self.mod.backward(self.config, self.params, cache, self.dy, workspace=self.workspace)
        return y, vars(grads), input_grads

    def pytorch(self):
        self.hf.zero_grad(set_to_none=True)
        for t in self.inputs.values():
            t.grad = None
        y = self.hf_call()
        y = y[0] if isinstance(y, tuple) else y
        y.backward(self.dy_t)
        return y

    def check(self):
        y, grads, input_grads = self.generated()
        y_t = self.pytorch().detach().numpy()
        ref_grads, ref_inputs = torch_grads(self.hf, self.names, self.inputs)

        def rel(a, b):
            return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
        errors = {"output": rel(y, y_t)}
        errors.update({f"d_{k}": rel(grads[k], ref_grads[k]) for k in self.names if not k.startswith("b_k")})
        errors.update({f"d_{k}": rel(input_grads[k], ref_inputs[k]) for k in ref_inputs})
        worst = max(errors, key=errors.get)
        print(f"  {self.card}: {len(errors)} tensors agree with PyTorch, worst {worst} {errors[worst]:.1e}")
        if errors[worst] > TOLERANCE:
            sys.exit(f"{self.card} disagrees with transformers beyond {TOLERANCE:g}; timings would mislead")


def encoder(size, path):
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer
    d, h, d_f, t, _, b = size
    cfg = BertConfig(hidden_size=d, num_attention_heads=h, intermediate_size=d_f, hidden_act="gelu",
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12,
                     attn_implementation="eager")
    torch.manual_seed(0)
    hf = randomize(BertLayer(cfg))
    mod = cardgen.load("BERTLayer", path=path).compile()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((b, t, d)).astype(np.float32)
    lengths = np.linspace(t, t // 2, b).astype(int)  # padding at the end, the first sequence unpadded
    m = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int64)
    bias = torch.zeros((b, 1, 1, t))
    bias[torch.from_numpy(m == 0)[:, None, None, :]] = torch.finfo(torch.float32).min
    x_t = torch.tensor(x, requires_grad=True)
    return Layer("BERTLayer", mod, mod.Config(D=d, H=h, D_f=d_f), card_params(mod, hf, BERT), (x, m), BERT, hf,
                 lambda: hf(x_t, attention_mask=bias), {"X": x_t})


def decoder(size, path):
    from transformers import BartConfig
    from transformers.models.bart.modeling_bart import BartDecoderLayer
    d, h, d_f, t, t_z, b = size
    cfg = BartConfig(d_model=d, decoder_attention_heads=h, decoder_ffn_dim=d_f, activation_function="gelu",
                     dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, attn_implementation="eager")
    torch.manual_seed(0)
    hf = randomize(BartDecoderLayer(cfg, layer_idx=0))
    mod = cardgen.load("BARTDecoderLayer", path=path).compile()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((b, t, d)).astype(np.float32)
    z = rng.standard_normal((b, t_z, d)).astype(np.float32)
    causal = torch.zeros((t, t))
    causal[torch.ones(t, t, dtype=torch.bool).triu(1)] = torch.finfo(torch.float32).min
    causal = causal[None, None].expand(b, 1, t, t)
    x_t, z_t = torch.tensor(x, requires_grad=True), torch.tensor(z, requires_grad=True)
    return Layer("BARTDecoderLayer", mod, mod.Config(D=d, H=h, D_f=d_f), card_params(mod, hf, BART), (x, z), BART,
                 hf, lambda: hf(x_t, attention_mask=causal, encoder_hidden_states=z_t, use_cache=False),
                 {"X": x_t, "Z": z_t})


def time_round_robin(steps, n, pause, burst=0):
    """Wall seconds of each step function, interleaved by turns. A turn starts after ``pause`` idle
    seconds (OpenBLAS's threads stop spinning before the next implementation runs) and runs
    1 + ``burst`` steps back to back; with burst > 0 the first is returned apart, as the step after
    idle, and the others are the steady steps (at least n of them)."""
    names = list(steps)
    out, idle = {k: [] for k in names}, {k: [] for k in names}
    for i in range(n if burst == 0 else -(-n // burst)):
        for k in names[i % len(names):] + names[:i % len(names)]:
            time.sleep(pause)
            for j in range(burst + 1):
                start = time.perf_counter()
                steps[k]()
                wall = time.perf_counter() - start
                (idle[k] if j == 0 and burst else out[k]).append(wall)
    return out, idle


def main():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=cores, help=f"threads for BLAS and torch (default {cores})")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per implementation (default 15)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.1, help="idle seconds before each turn (default 0.1)")
    parser.add_argument("--burst", type=int, default=3,
                        help="steady steps per turn: each turn runs 1 + BURST steps back to back and times the "
                             "first, after the pause, apart (default 3; 0: every step after a pause)")
    parser.add_argument("--size", choices=sorted(SIZES), default="small",
                        help="small: D=256 H=4 D_f=1024 T=128 T_z=96 B=8 (default); "
                             "base: D=768 H=12 D_f=3072 T=T_z=128 B=4")
    parser.add_argument("--only", choices=["encoder", "decoder"])
    parser.add_argument("--path", action="append", default=[], help="a folder to find cards in (repeatable)")
    parser.add_argument("--no-shards", action="store_true",
                        help="run the generated layer as one call (BLAS and the element-wise helpers on --threads "
                             "threads) instead of cardgen.Sharded: --threads shards of the batch, one BLAS thread each")
    args = parser.parse_args()
    global SHARDS
    SHARDS = 1 if args.no_shards else args.threads
    torch.set_num_threads(args.threads)
    if args.no_shards:
        os.environ["CARDGEN_THREADS"] = str(args.threads)  # the generated modules' element-wise helpers
    threadpool_limits(limits=args.threads, user_api="blas")
    d, h, d_f, t, t_z, b = size = SIZES[args.size]
    print(f"layers, forward + backward, float32: D={d} H={h} D_f={d_f} T={t} T_z={t_z} B={b}; "
          f"{args.threads} threads; generated: "
          f"{'one call' if SHARDS == 1 else f'cardgen.Sharded, {SHARDS} shards of one BLAS thread each'}; "
          f"torch {torch.__version__} eager; load average {os.getloadavg()[0]:.2f}")
    rows = {"encoder": encoder, "decoder": decoder}
    layers = [make(size, args.path) for name, make in rows.items() if args.only in (None, name)]
    for layer in layers:
        layer.check()
    turns = "" if args.burst == 0 else f", in turns of {args.burst + 1} steps back to back, the first after idle"
    print(f"\n{args.steps} timed steps each, round-robin{turns}:")
    idle_head = f" {'after idle':>11}" if args.burst else ""
    print(f"  {'':<18} {'generated ms':>12} {'pytorch ms':>11} {'generated / pytorch':>20}{idle_head}")
    for layer in layers:
        steps = {"generated": layer.generated, "pytorch": layer.pytorch}
        time_round_robin(steps, args.warmup, args.pause)
        samples, idle = time_round_robin(steps, args.steps, args.pause, args.burst)
        gen, pt = (statistics.median(samples[k]) for k in ("generated", "pytorch"))
        after = ""
        if args.burst:
            after = f" {statistics.median(idle['generated']) / statistics.median(idle['pytorch']):>11.2f}"
        print(f"  {layer.card:<18} {1e3 * gen:>12.1f} {1e3 * pt:>11.1f} {gen / pt:>20.2f}{after}")
    print("  (medians; generated / pytorch is their ratio" +
          ("; after idle: the same ratio for the first step of each turn)" if args.burst else ")"))


if __name__ == "__main__":
    main()
