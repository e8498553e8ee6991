"""Hugging Face GPT-2 in and out: a random-init GPT2LMHeadModel saved with save_pretrained becomes a
checkpoint of the GPT2 card (`cardgen import-hf`) whose logits, computed by the generated module,
equal the model's; `cardgen export-hf` writes a folder that from_pretrained loads to the same logits."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from transformers import GPT2Config, GPT2LMHeadModel

from cardgen.cli import main
from cardgen.train import checkpoint as ckpt

from .conftest import ROOT

V, D, H, N, CTX = 97, 32, 4, 2, 24


def saved_gpt2(folder, **over):
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=V, n_positions=CTX, n_embd=D, n_layer=N, n_head=H, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, **over)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # layer norms and biases away from their 1 / 0 start, so a mix-up shows
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    out = folder / "hf-gpt2"
    model.save_pretrained(out)
    return out


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def card_logits(path, x):
    ck = ckpt.open_checkpoint(path)
    try:
        mods = ckpt.compile_checkpoint(ck)
        params, m, _ = ckpt.load_state(ck, mods)
    finally:
        ck.close()
    assert m is None and ck.tokens == "ids"
    logits, _ = mods.model.forward(mods.config, params, x, 0)
    return logits, params


def test_import_then_export_keeps_the_logits(tmp_path):
    folder = saved_gpt2(tmp_path)
    assert (folder / "model.safetensors").exists()
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    x = np.random.default_rng(1).integers(0, V, size=(3, CTX))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).logits.numpy()
    out = tmp_path / "gpt2.safetensors"
    r = cli("import-hf", folder, "-o", out, "--card", ROOT / "cards" / "GPT2.card")
    assert r.exit_code == 0, r.output
    logits, params = card_logits(out, x)
    assert params.W_e.dtype == np.float32
    assert np.max(np.abs(logits - ref)) <= 1e-5 * np.max(np.abs(ref))

    back = tmp_path / "exported"
    r = cli("export-hf", out, back)
    assert r.exit_code == 0, r.output
    again = GPT2LMHeadModel.from_pretrained(back).eval()
    with torch.no_grad():
        ref2 = again(torch.from_numpy(x)).logits.numpy()
    assert np.max(np.abs(ref2 - ref)) <= 1e-5 * np.max(np.abs(ref))
    for name, p in model.state_dict().items():  # the very same numbers
        assert torch.equal(p, again.state_dict()[name]), name

    sampled = cli("sample", out, "--prompt", "3 14 15", "--tokens", 4, "--temperature", 0)
    assert sampled.exit_code == 0, sampled.output
    ids = [int(t) for t in sampled.output.split()]
    assert ids[:3] == [3, 14, 15] and len(ids) == 7
    with torch.no_grad():
        greedy = model.generate(torch.tensor([[3, 14, 15]]), max_new_tokens=4, do_sample=False,
                                pad_token_id=0).numpy()[0]
    assert ids == greedy.tolist()


@pytest.mark.parametrize("change, message", [
    ({"activation_function": "relu"}, "activation_function 'relu'"),
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon"),
    ({"n_head": 5}, "n_embd 32 is not a multiple of n_head 5"),
    ({"model_type": "llama"}, "model_type 'llama'"),
    ({"n_layer": -1}, "n_layer = -1"),
])
def test_a_gpt2_the_card_does_not_compute_is_refused(tmp_path, change, message):
    folder = saved_gpt2(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(change)
    (folder / "config.json").write_text(json.dumps(cfg))
    r = cli("import-hf", folder, "-o", tmp_path / "x.safetensors")
    assert r.exit_code == 1 and message in r.output and "internal error" not in r.output, r.output


def test_a_pickle_is_never_loaded(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    saved = saved_gpt2(tmp_path)
    (folder / "config.json").write_text((saved / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 a pickle would run code here")
    r = cli("import-hf", folder, "-o", tmp_path / "x.safetensors")
    assert r.exit_code == 1 and "pickle" in r.output, r.output


def test_sample_of_an_id_checkpoint_checks_the_prompt(tmp_path):
    out = tmp_path / "gpt2.safetensors"
    assert cli("import-hf", saved_gpt2(tmp_path), "-o", out).exit_code == 0
    for prompt, message in (("hello", "takes token ids"), ("1 97", "outside 0..96"), ("", "--prompt is empty")):
        r = cli("sample", out, "--prompt", prompt)
        assert r.exit_code == 1 and message in r.output, r.output


def test_a_model_too_big_for_the_limit_is_refused_before_loading(tmp_path):
    """An import-hf checkpoint (token ids, any V) declaring a model past --max-bytes."""
    folder = saved_gpt2(tmp_path)
    out = tmp_path / "gpt2.safetensors"
    r = cli("import-hf", folder, "-o", out, "--max-bytes", 1000)
    assert r.exit_code == 1 and "more than the limit 1,000" in r.output, r.output
    assert cli("import-hf", folder, "-o", out).exit_code == 0
    r = cli("sample", out, "--prompt", "1 2", "--tokens", 2)
    assert r.exit_code == 0, r.output
    r = cli("export-hf", out, tmp_path / "hf", "--max-bytes", 1000)
    assert r.exit_code == 1 and "more than the limit 1,000" in r.output, r.output


def test_a_weights_only_checkpoint_does_not_resume(tmp_path):
    folder = saved_gpt2(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    assert cli("import-hf", folder, "-o", run / "checkpoint.safetensors").exit_code == 0
    r = cli("train", ROOT / "cards" / "GPT2.card", "--resume", "--out", run, "--steps", 3)
    assert r.exit_code == 1 and "no optimizer state" in r.output, r.output
    assert "internal error" not in r.output


def test_import_into_a_card_that_is_not_gpt2_is_refused(tmp_path):
    r = cli("import-hf", saved_gpt2(tmp_path), "-o", tmp_path / "x.safetensors", "--card", "Bigram")
    assert r.exit_code == 1 and "is not the GPT2 card: it has no D, H, N, ctx" in r.output, r.output
    folder = tmp_path / "run"
    data = tmp_path / "data.txt"
    data.write_bytes((ROOT / "generator" / "lang" / "check.py").read_bytes()[:20_000])
    assert cli("train", "Bigram", "--data", data, "--steps", 2, "--out", folder).exit_code == 0
    r = cli("export-hf", folder / "checkpoint.safetensors", tmp_path / "hf")
    assert r.exit_code == 1 and "holds a Bigram model, not a GPT-2" in r.output, r.output
