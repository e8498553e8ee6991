"""Checkpoints are data: safetensors files that Hugging Face's reader reads, carrying their cards'
texts, so ``sample`` and ``--resume`` never read a card path; every malformed checkpoint is an
error in the user's terms (exit 1), found before the tensors are read."""

import json
import struct

import numpy as np
import pytest
import safetensors.numpy
from click.testing import CliRunner

from cardgen.cli import main
from cardgen.train import checkpoint as ckpt
from cardgen.train.cards import sha256
from cardgen.train.tensorfile import FormatError, TensorFile, encode

from .conftest import ROOT

DATA = (ROOT / "generator" / "lang" / "check.py").read_bytes()[:30_000]
# A constant rate (--lr-min = --lr), so a resumed run may be given more steps.
RUN = ["--batch", "2", "--seq", "8", "--eval-every", "2", "--save-every", "2", "--lr", "1e-3", "--lr-min", "1e-3"]


def cli(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A real checkpoint of a two-step Bigram run, and its data file."""
    folder = tmp_path_factory.mktemp("good")
    data = folder / "data.txt"
    data.write_bytes(DATA)
    r = cli("train", ROOT / "cards" / "Bigram.card", "--data", data, "--steps", 2, "--out", folder / "run", *RUN)
    assert r.exit_code == 0, r.output
    return folder / "run" / "checkpoint.safetensors"


def parts(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def build(header, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def with_meta(path, change):
    """The checkpoint with its cardgen metadata changed by change(meta) (tensors untouched)."""
    header, data = parts(path)
    meta = json.loads(header["__metadata__"]["cardgen"])
    change(meta)
    header["__metadata__"]["cardgen"] = json.dumps(meta)
    return build(header, data)


def with_header(path, change):
    header, data = parts(path)
    change(header)
    return build(header, data)


def drop(d, key):
    d.pop(key)


def retype(name, dtype, size):
    def change(header):
        header[name]["dtype"] = dtype
    return change


def test_the_checkpoint_is_safetensors_with_its_cards(good):
    tensors = safetensors.numpy.load_file(good)  # Hugging Face's own reader
    assert set(tensors) == {"params/W", "m/W", "v/W"} and tensors["params/W"].shape == (256, 256)
    with safetensors.safe_open(good, "np") as f:
        raw = f.metadata()
    meta = json.loads(raw["cardgen"])
    assert raw["format"] == "cardgen-checkpoint"
    assert set(meta["cards"]) == {"Bigram", "cross_entropy", "AdamW"}
    assert meta["cards"]["Bigram"]["text"] == (ROOT / "cards" / "Bigram.card").read_text("utf-8")
    assert meta["step"] == 2 and meta["config"] == {"V": 256} and meta["rng"]["bit_generator"] == "PCG64"
    assert str(ROOT) not in raw["cardgen"] and str(good.parent) not in raw["cardgen"]  # names no path to read


def test_sample_reads_no_card_from_disk_and_says_when_it_differs(good, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere" / "ckpt.safetensors"
    moved.parent.mkdir()
    moved.write_bytes(good.read_bytes())
    monkeypatch.chdir(moved.parent)  # no cards/ folder here: nothing to find on disk
    r = cli("sample", moved, "--prompt", "def ", "--tokens", 5, "--temperature", 0)
    assert r.exit_code == 0 and r.output.startswith("def "), r.output
    edited = tmp_path / "Bigram.card"
    edited.write_text((ROOT / "cards" / "Bigram.card").read_text("utf-8").replace("Bigram language", "A language"))
    r2 = cli("sample", moved, "--prompt", "def ", "--tokens", 5, "--temperature", 0, "--card", edited)
    assert r2.exit_code == 0 and "differs from the card on disk" in r2.output and "Bigram" in r2.output
    assert r2.output.splitlines()[-1] == r.output.splitlines()[-1]  # sampled with the checkpoint's own card


def test_resume_compiles_the_checkpoints_cards_not_the_ones_on_disk(good, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoint.safetensors").write_bytes(good.read_bytes())
    data = tmp_path / "data.txt"
    data.write_bytes(DATA)
    card = tmp_path / "Bigram.card"  # the "card" named on the command line is broken: it is not used
    card.write_text((ROOT / "cards" / "Bigram.card").read_text("utf-8").replace("W[x]", "W[x] + 1"))
    r = cli("train", card, "--resume", "--out", folder, "--data", data, "--steps", 4)
    assert r.exit_code == 0, r.output
    assert "differs from the card on disk" in r.output and "resuming Bigram at step 2" in r.output


def test_sampled_control_characters_are_escaped():
    from cardgen.train.text import decode, escape_controls
    assert escape_controls("a\x1b[31mred\x07\tb\nc\x7f\u202ed\x85") == "a\\x1b[31mred\\x07\tb\nc\\x7f\\u202ed\\x85"
    assert decode(b"ok\xff\x1b]0;title\x07") == "ok\ufffd\\x1b]0;title\\x07"


def test_our_writer_and_the_reference_reader_agree(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1.5], dtype=np.float64),
              "c": np.zeros((0, 4), dtype=np.float32), "d": np.arange(5, dtype=np.int64)}
    path = tmp_path / "x.safetensors"
    path.write_bytes(encode(arrays, {"k": "v"}))
    theirs = safetensors.numpy.load_file(path)
    assert all(np.array_equal(theirs[k], arrays[k]) and theirs[k].dtype == arrays[k].dtype for k in arrays)
    ref = tmp_path / "ref.safetensors"
    safetensors.numpy.save_file(arrays, ref, metadata={"k": "v"})
    with TensorFile(ref) as f:
        assert f.metadata == {"k": "v"}
        assert all(np.array_equal(f.tensor(k), arrays[k]) and f.dtype(k) == arrays[k].dtype for k in arrays)


AS_TEXT = {
    "empty file": lambda p: b"",
    "five bytes": lambda p: b"\x01\x02\x03\x04\x05",
    "a text file": lambda p: b"algorithm P <- Bigram(x | W)\n" * 20,
    "an old npz checkpoint": lambda p: b"PK\x03\x04" + bytes(200),
    "a PNG": lambda p: b"\x89PNG\r\n\x1a\n" + bytes(100),
    "truncated in the length": lambda p: p.read_bytes()[:6],
    "truncated in the header": lambda p: p.read_bytes()[:200],
    "truncated in the tensors": lambda p: p.read_bytes()[:-1000],
    "one byte short": lambda p: p.read_bytes()[:-1],
    "bytes left over": lambda p: p.read_bytes() + b"\0" * 8,
    "header of 2^60 bytes": lambda p: struct.pack("<Q", 2**60) + p.read_bytes()[8:],
    "header of 64 MiB": lambda p: struct.pack("<Q", 64 * 2**20) + bytes(64 * 2**20 + 16),
    "header not UTF-8": lambda p: struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc",
    "header not JSON": lambda p: struct.pack("<Q", 5) + b"{nope",
    "header a list": lambda p: struct.pack("<Q", 2) + b"[]",
    "header nested 100k deep": lambda p: struct.pack("<Q", 200_000) + b"[" * 100_000 + b"]" * 100_000,
    "no cardgen metadata": lambda p: encode({"x": np.zeros(3, np.float32)}, {"format": "pt"}),
    "metadata not strings": lambda p: with_header(p, lambda h: h.__setitem__("__metadata__", {"format": 3})),
    "cardgen metadata not JSON": lambda p: with_header(p, lambda h: h["__metadata__"].__setitem__("cardgen", "{")),
    "cardgen metadata a list": lambda p: with_header(p, lambda h: h["__metadata__"].__setitem__("cardgen", "[]")),
    "no cards": lambda p: with_meta(p, lambda m: drop(m, "cards")),
    "no config": lambda p: with_meta(p, lambda m: drop(m, "config")),
    "no step": lambda p: with_meta(p, lambda m: drop(m, "step")),
    "no dtype": lambda p: with_meta(p, lambda m: drop(m, "dtype")),
    "no card": lambda p: with_meta(p, lambda m: drop(m, "card")),
    "no version": lambda p: with_meta(p, lambda m: drop(m, "version")),
    "step a string": lambda p: with_meta(p, lambda m: m.__setitem__("step", "2")),
    "step negative": lambda p: with_meta(p, lambda m: m.__setitem__("step", -1)),
    "config a list": lambda p: with_meta(p, lambda m: m.__setitem__("config", [256])),
    "version 9": lambda p: with_meta(p, lambda m: m.__setitem__("version", 9)),
    "dtype float16": lambda p: with_meta(p, lambda m: m.__setitem__("dtype", "float16")),
    "tokens unknown": lambda p: with_meta(p, lambda m: m.__setitem__("tokens", "bpe")),
    "card text altered": lambda p: with_meta(p, lambda m: m["cards"]["Bigram"].__setitem__(
        "text", m["cards"]["Bigram"]["text"].replace("W[x]", "W[x] + W[x]"))),
    "card text broken, its SHA-256 updated": lambda p: with_meta(p, lambda m: m["cards"].__setitem__(
        "Bigram", {"text": "algorithm P ← Bigram(x | W\n", "sha256": sha256("algorithm P ← Bigram(x | W\n")})),
    "card stored under another name": lambda p: with_meta(p, lambda m: m["cards"].__setitem__(
        "Bigram", m["cards"]["AdamW"])),
    "card name a path": lambda p: with_meta(p, lambda m: m["cards"].__setitem__("../../etc/passwd", {
        "text": "x", "sha256": sha256("x")})),
    "card entry not a table": lambda p: with_meta(p, lambda m: m["cards"].__setitem__("Bigram", "text")),
    "model card not carried": lambda p: with_meta(p, lambda m: m.__setitem__("card", "GPT2")),
    "config V negative": lambda p: with_meta(p, lambda m: m["config"].__setitem__("V", -1)),
    "config V huge": lambda p: with_meta(p, lambda m: m["config"].__setitem__("V", 10**30)),
    "config V a string": lambda p: with_meta(p, lambda m: m["config"].__setitem__("V", "256")),
    "config V not bytes": lambda p: with_meta(p, lambda m: m["config"].__setitem__("V", 255)),
    "config unknown name": lambda p: with_meta(p, lambda m: m["config"].__setitem__("Q", 3)),
    "run settings damaged": lambda p: with_meta(p, lambda m: m["run"].update(batch="2", seq=-3)),
    "rng not PCG64": lambda p: with_meta(p, lambda m: m.__setitem__("rng", {"bit_generator": "MT19937"})),
    "rng state damaged": lambda p: with_meta(p, lambda m: m["rng"].__setitem__("state", {"state": "x"})),
    "tensor missing": lambda p: tensors_without(p, "params/W"),
    "only m, no v": lambda p: tensors_without(p, "v/W"),
    "unknown tensor group": lambda p: renamed(p, "v/W", "w/W"),
    "unexpected tensor": lambda p: renamed(p, "v/W", "params/X"),
    "dtype F64 in a float32 checkpoint": lambda p: with_header(p, lambda h: h["params/W"].update(
        dtype="F64", shape=[256, 128])),
    "dtype I32": lambda p: with_header(p, lambda h: h["params/W"].__setitem__("dtype", "I32")),
    "dtype BF16": lambda p: with_header(p, lambda h: h["params/W"].__setitem__("dtype", "BF16")),
    "shape transposed halves": lambda p: with_header(p, lambda h: h["params/W"].__setitem__("shape", [512, 128])),
    "shape a string": lambda p: with_header(p, lambda h: h["params/W"].__setitem__("shape", "256x256")),
    "shape a bomb (offsets unchanged)": lambda p: with_header(p, lambda h: h["params/W"].__setitem__(
        "shape", [2**20, 2**20])),
    "offsets overlap": lambda p: with_header(p, lambda h: h["m/W"].__setitem__(
        "data_offsets", h["params/W"]["data_offsets"])),
    "offsets past the end": lambda p: with_header(p, lambda h: h["v/W"].__setitem__(
        "data_offsets", [h["v/W"]["data_offsets"][0] + 8, h["v/W"]["data_offsets"][1] + 8])),
    "offsets backwards": lambda p: with_header(p, lambda h: h["v/W"].__setitem__("data_offsets", [10, 5])),
    "entry not a table": lambda p: with_header(p, lambda h: h.__setitem__("params/W", [1, 2])),
}


def tensors_without(path, name):
    header, data = parts(path)
    begin, end = header.pop(name)["data_offsets"]
    for e in header.values():
        if isinstance(e, dict) and "data_offsets" in e and e["data_offsets"][0] >= end:
            e["data_offsets"] = [o - (end - begin) for o in e["data_offsets"]]
    return build(header, data[:begin] + data[end:])


def renamed(path, old, new):
    return with_header(path, lambda h: h.__setitem__(new, h.pop(old)))


@pytest.mark.parametrize("case", list(AS_TEXT))
def test_a_malformed_checkpoint_is_a_clear_error(good, tmp_path, case):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(AS_TEXT[case](good))
    r = cli("sample", bad, "--tokens", 3)
    assert r.exit_code == 1, (case, r.output)
    assert "error" in r.output and "internal error" not in r.output and "Traceback" not in r.output, r.output
    assert r.output.count("\n") <= 6, r.output  # a message, not a dump
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.safetensors").write_bytes(bad.read_bytes())
    data = tmp_path / "data.txt"
    data.write_bytes(DATA)
    r2 = cli("train", ROOT / "cards" / "Bigram.card", "--resume", "--out", out, "--data", data, "--steps", 4)
    assert r2.exit_code == 1 and "internal error" not in r2.output, (case, r2.output)


def test_the_reader_refuses_before_reading_tensors(good, tmp_path):
    """A header declaring a terabyte is refused from its 8 + header bytes; a declared size must be
    the size on disk, so memory never exceeds the file's size."""
    bomb = tmp_path / "bomb.safetensors"
    bomb.write_bytes(AS_TEXT["shape a bomb (offsets unchanged)"](good))
    with pytest.raises(FormatError, match="needs 4,398,046,511,104 bytes, its offsets span 262,144"):
        TensorFile(bomb)


def test_checkpoint_error_names_the_file(good, tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.open_checkpoint(bad)
    assert str(e.value).startswith(f"{bad}: error: not a cardgen checkpoint")


def test_memory_is_bounded_by_the_file_not_by_what_it_declares(good, tmp_path):
    """A config declaring 13 TB of tensors is refused having allocated kilobytes; a good checkpoint
    takes about its tensors' size on disk to load (each read once, in place)."""
    import tracemalloc

    def huge(m):
        m["tokens"], m["config"]["V"] = "ids", 2**20
    bomb = tmp_path / "bomb.safetensors"
    bomb.write_bytes(with_meta(good, huge))
    for path, expect_error in ((bomb, True), (good, False)):
        ck = ckpt.open_checkpoint(path)
        mods = ckpt.compile_checkpoint(ck)
        tracemalloc.start()
        try:
            if expect_error:
                with pytest.raises(ckpt.CheckpointError, match="13,194,139,533,312 bytes of tensors"):
                    ckpt.load_state(ck, mods)
            else:
                state = ckpt.load_state(ck, mods)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            ck.close()
        tensors = 3 * 256 * 256 * 4
        assert peak < (100_000 if expect_error else 1.2 * tensors), peak
    assert state[0].W.shape == (256, 256) and state[0].W.flags.writeable
