"""Hugging Face GPT-2 in and out: a folder written by ``GPT2LMHeadModel.save_pretrained`` (its
``config.json`` and ``model.safetensors``) to a checkpoint of the GPT2 card, and back.

The weight map is one table: each card parameter and the Hugging Face tensor it is, the whole
model's once, each block's stacked over the N blocks (``h.{i}.attn.c_attn.weight`` for ℓ = i + 1).
GPT-2's ``Conv1D`` stores weights as (in, out), the card's orientation (``X W + b``), so nothing is
transposed. The language-model head is tied to ``wte`` in GPT-2 and in the card (``P = e · W_e^⊤``).

Only ``model.safetensors`` is read: ``pytorch_model.bin`` is a pickle, and loading a pickle runs
whatever code it holds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..lang.errors import CardError
from ..lang.files import atomic_write, inside
from .tensorfile import FormatError, TensorFile, encode

# card parameter -> Hugging Face tensor (within ``transformer.``)
MODEL_TENSORS = {"W_e": "wte.weight", "W_p": "wpe.weight", "gamma_f": "ln_f.weight", "beta_f": "ln_f.bias"}
BLOCK_TENSORS = {
    "gamma_1": "ln_1.weight", "beta_1": "ln_1.bias",
    "W_qkv": "attn.c_attn.weight", "b_qkv": "attn.c_attn.bias",
    "W_o": "attn.c_proj.weight", "b_o": "attn.c_proj.bias",
    "gamma_2": "ln_2.weight", "beta_2": "ln_2.bias",
    "W_fc": "mlp.c_fc.weight", "b_fc": "mlp.c_fc.bias",
    "W_proj": "mlp.c_proj.weight", "b_proj": "mlp.c_proj.bias",
}
# Buffers older transformers versions saved beside the weights: the causal mask, not parameters.
BUFFERS = ("attn.bias", "attn.masked_bias")
# config.json -> card hyperparameter
CONFIG = {"vocab_size": "V", "n_embd": "D", "n_head": "H", "n_layer": "N", "n_positions": "ctx"}
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # the card's MLP: GELU, tanh approximation
LAYER_NORM_EPS = 1e-5  # the LayerNorm card's ε


class HFError(CardError):
    def __str__(self) -> str:
        return f"{self.path}: error: {self.message}" + (f"\n  hint: {self.hint}" if self.hint else "")


def read_config(folder: Path) -> dict:
    """The card's hyperparameters from config.json, refusing a GPT-2 variant the card does not compute."""
    path = folder / "config.json"
    try:
        cfg = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise HFError("no config.json: not a folder written by save_pretrained", path=str(folder)) from None
    except (UnicodeError, json.JSONDecodeError, RecursionError):
        raise HFError("not JSON", path=str(path)) from None
    if not isinstance(cfg, dict):
        raise HFError("not a JSON object", path=str(path))

    def bad(msg, hint=None):
        return HFError(msg, path=str(path), hint=hint)
    if cfg.get("model_type") != "gpt2":
        raise bad(f"model_type {str(cfg.get('model_type'))[:40]!r}: the GPT2 card computes GPT-2 only")
    values = {}
    for key, name in CONFIG.items():
        v = cfg.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 < v < 2**31:
            raise bad(f"{key} = {str(v)[:40]}: expected a positive whole number")
        values[name] = v
    inner = cfg.get("n_inner")
    values["D_f"] = 4 * values["D"] if inner is None else inner
    if not isinstance(values["D_f"], int) or values["D_f"] <= 0:
        raise bad(f"n_inner = {str(inner)[:40]}: expected a positive whole number or null")
    if values["D"] % values["H"]:
        raise bad(f"n_embd {values['D']} is not a multiple of n_head {values['H']}")
    act = cfg.get("activation_function", "gelu_new")
    if act not in GELU_TANH:
        raise bad(f"activation_function {str(act)[:40]!r}: the card's MLP uses GELU with the tanh approximation "
                  f"({', '.join(GELU_TANH)})")
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    if not isinstance(eps, int | float) or not math.isclose(eps, LAYER_NORM_EPS, rel_tol=1e-9):
        raise bad(f"layer_norm_epsilon {str(eps)[:40]}: the LayerNorm card's ε is {LAYER_NORM_EPS:g}")
    for key, want in (("tie_word_embeddings", True), ("scale_attn_weights", True),
                      ("scale_attn_by_inverse_layer_idx", False)):
        if cfg.get(key, want) != want:
            raise bad(f"{key} = {cfg[key]}: the GPT2 card computes GPT-2 with {key} = {want}")
    return values


def import_weights(folder: Path, shapes: dict[str, tuple[int, ...]], limit: int) -> dict[str, np.ndarray]:
    """The card's parameters (float32 or float64, as saved; float16 widened to float32) from
    model.safetensors, each tensor's shape checked before it is read."""
    path = folder / "model.safetensors"
    if not path.is_file():
        hint = None
        if (folder / "pytorch_model.bin").exists():
            hint = ("this folder holds only pytorch_model.bin, a pickle (loading it runs code); "
                    "save it with save_pretrained(..., safe_serialization=True)")
        raise HFError("no model.safetensors", path=str(folder), hint=hint)
    try:
        f = TensorFile(path)
    except FormatError as e:
        raise HFError(str(e), path=str(path)) from None
    with f:
        prefix = "transformer." if any(k.startswith("transformer.") for k in f.entries) else ""
        n = shapes["gamma_1"][0]
        wanted = {card: prefix + hf for card, hf in MODEL_TENSORS.items()}
        for card, hf in BLOCK_TENSORS.items():
            wanted.update({(card, i): f"{prefix}h.{i}.{hf}" for i in range(n)})
        known = set(wanted.values()) | {"lm_head.weight"}
        extra = [k for k in f.entries if k not in known and not k.endswith(BUFFERS)]
        missing = [k for k in wanted.values() if k not in f.entries]
        if missing or extra:
            parts = [f"missing {', '.join(missing[:5])}" if missing else "",
                     f"not a GPT-2 tensor: {', '.join(extra[:5])}" if extra else ""]
            raise HFError("the tensors are not GPT-2's at this config.json: " + "; ".join(p for p in parts if p),
                          path=str(path))
        total = 0
        for key, hf in wanted.items():
            want = shapes[key] if isinstance(key, str) else shapes[key[0]][1:]
            if f.shape(hf) != want:
                raise HFError(f"{hf} has shape {f.shape(hf)}, config.json implies {want}", path=str(path))
            if f.dtype(hf).kind != "f":
                raise HFError(f"{hf} is {f.dtype(hf)}, not floating point", path=str(path))
            total += math.prod(want) * max(4, f.dtype(hf).itemsize)
        if total > limit:
            raise HFError(f"the model takes {total:,} bytes, more than the limit {limit:,}", path=str(path),
                          hint="--max-bytes raises the limit")
        dtype = np.float64 if any(f.dtype(hf) == np.float64 for hf in wanted.values()) else np.float32
        out = {card: f.tensor(prefix + hf).astype(dtype, copy=False) for card, hf in MODEL_TENSORS.items()}
        for card, hf in BLOCK_TENSORS.items():
            out[card] = np.stack([f.tensor(f"{prefix}h.{i}.{hf}").astype(dtype, copy=False) for i in range(n)])
        if "lm_head.weight" in f.entries:
            head = f.tensor("lm_head.weight")
            if head.shape != out["W_e"].shape or not np.array_equal(head.astype(dtype), out["W_e"]):
                raise HFError("lm_head.weight differs from transformer.wte.weight: the card ties them",
                              path=str(path))
    return out


def export(folder: Path, config, params) -> list[Path]:
    """config.json and model.safetensors that ``GPT2LMHeadModel.from_pretrained(folder)`` loads."""
    folder.mkdir(parents=True, exist_ok=True)
    dtype = np.result_type(params.W_e)
    cfg = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
        "vocab_size": config.V, "n_positions": config.ctx, "n_ctx": config.ctx, "n_embd": config.D,
        "n_layer": config.N, "n_head": config.H, "n_inner": config.D_f, "layer_norm_epsilon": LAYER_NORM_EPS,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "tie_word_embeddings": True,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "torch_dtype": str(dtype),
    }
    tensors = {f"transformer.{hf}": getattr(params, card) for card, hf in MODEL_TENSORS.items()}
    for i in range(config.N):
        tensors.update({f"transformer.h.{i}.{hf}": getattr(params, card)[i] for card, hf in BLOCK_TENSORS.items()})
    paths = [inside(folder, "config.json"), inside(folder, "model.safetensors")]
    atomic_write(paths[0], json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    atomic_write(paths[1], encode(tensors, {"format": "pt"}))
    return paths
