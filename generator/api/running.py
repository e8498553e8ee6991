"""Running cards: gradient checks of many cards, training, sampling, and Hugging Face GPT-2 in and
out (the functions behind ``cardgen gradcheck``, ``train``, ``sample``, ``import-hf``,
``export-hf``)."""

from __future__ import annotations

from ..lang.load import card_paths, resolve
from .cards import Card, Paths, _sources, configured, load


def __getattr__(name: str):
    """``GRADCHECK_TOLERANCE`` and ``Settings`` (a run's settings), imported on first use: they bring
    NumPy and the trainer, which ``cardgen check`` does not need."""
    if name == "GRADCHECK_TOLERANCE":
        from ..compile.gradcheck import TOL
        return TOL
    if name == "Settings":
        from ..train.run import Settings
        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def gradcheck(sources=(), config: str | None = None, sizes: dict | None = None, seed: int = 0,
              path: Paths = None) -> list[tuple[Card, object]]:
    """Each card among ``sources`` (default ``cards/``) with its gradient check
    (``compile.gradcheck.Result``: ``worst``, ``errors`` by tensor, ``status(tensor)`` ``ok``,
    ``FAIL`` or ``straight-through`` where its gradient flows through a rule marked so, and
    ``through``, the estimators of each such tensor), at small sizes, or at the
    named configuration ``config`` with ``sizes`` on top (names of any of the cards), training and
    inference cards too (a card that draws masks draws the same ones every call)."""
    from ..compile.gradcheck import gradcheck as check_gradients
    shared: dict = {}
    cards = [load(f, path, compiles=False, shared=shared) for f in card_paths(_sources(sources) or ["cards"])]
    out = []
    for card in cards:
        values = configured(card, config, dict(sizes or {}), cards=cards)
        out.append((card, check_gradients(card.checked, card.library, values, seed)))

    return out


def train(card: str, values: dict, settings, given: dict, out_dir: str | None = None, resume: bool = False,
          force: bool = False, data: str | None = None, log_scale: bool = False, say=print, out=print,
          config: str | None = None) -> int:
    """Start or resume a training run of ``card`` (see ``cardgen train --help``); the exit status."""
    from ..train.commands import train as run
    return run(card, values, settings, given, out_dir, resume, force, data, log_scale, say, out, config=config)


def train_torch(card: str, data: str | None, **options):
    """Train ``card`` as a ``cardgen.torch`` module with ``torch.optim.AdamW``, data-parallel over
    processes (``torch.distributed``); returns the run's folder."""
    from ..torch.ddp import train_command
    from ..train.commands import read_data
    return train_command(resolve(card), read_data(data)[0], **options)


def sample(checkpoint: str, prompt: str, tokens: int = 200, temperature: float = 0.8, seed: int = 0,
           card: str | None = None, say=print, out=print, limit: int = 16 * 2**30) -> None:
    """Continue ``prompt`` with a trained checkpoint, compiled from the card texts it carries."""
    from ..train.commands import sample as run
    run(checkpoint, prompt, tokens, temperature, seed, card, say=say, out=out, limit=limit)


def import_hf(folder: str, card: str = "GPT2", out: str = "gpt2.safetensors", limit: int = 16 * 2**30) -> str:
    """A Hugging Face GPT-2 folder (``save_pretrained``) as a checkpoint of the GPT2 card."""
    from ..train.commands import import_hf as run
    return run(folder, card, out, limit)


def export_hf(checkpoint: str, folder: str, limit: int = 16 * 2**30) -> list:
    """A GPT2 checkpoint as a Hugging Face folder (``GPT2LMHeadModel.from_pretrained`` reads it)."""
    from ..train.commands import export_hf as run
    return run(checkpoint, folder, limit)
