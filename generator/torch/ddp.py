"""Data-parallel training of a model card on torch.distributed: each process
holds the card as a ``CardModule`` wrapped in ``DistributedDataParallel``, runs
the card's forward and derived backward on its share of every batch, and DDP
all-reduces (averages) the gradients before a stock ``torch.optim.AdamW`` step,
so N processes take the steps one process would take on the whole batch.

Started by ``cardgen train CARD --engine torch --nproc N`` (N local processes
on this machine), or by ``torchrun``, which sets RANK, WORLD_SIZE and
MASTER_ADDR for every process on every machine:

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        $(which cardgen) train cards/GPT2.card --engine torch --set D=768 …

The backend is NCCL where the processes have CUDA GPUs (one per process) and
gloo on CPUs.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import os
import socket
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import functional

from ..lang.errors import CardError
from ..lang.files import atomic_write
from . import CardModule, compile_card


@dataclasses.dataclass(frozen=True)
class Run:
    """What every process needs to take the same steps (picklable: spawn sends it)."""
    card: str
    tokens: np.ndarray        # uint8 training text
    sizes: dict               # the card's hyperparameters
    steps: int
    batch: int                # sequences per step, over all processes
    seq: int
    lr: float
    weight_decay: float = 0.0
    seed: int = 0
    dtype: str = "float32"
    out: str | None = None    # folder for weights.npz and log.csv (rank 0 writes them)


def batch_rows(run: Run, step: int) -> np.ndarray:
    """The whole batch of one step, (batch, seq + 1) token ids: the same on every process."""
    rng = np.random.default_rng([run.seed, step])
    starts = rng.integers(0, len(run.tokens) - run.seq - 1, size=run.batch)
    return np.stack([run.tokens[s:s + run.seq + 1] for s in starts]).astype(np.int64)


def model_inputs(module: CardModule, x: torch.Tensor) -> list:
    """The card's inputs for token ids x: the ids, then 0 for an offset such as p_start."""
    names = list(inspect.signature(module.module.forward).parameters)[2:]
    if len(names) > 2:
        raise CardError(f"{module.card}: --engine torch trains cards that take token ids (and an offset), "
                        f"not {', '.join(names)}")
    return [x] + [0] * (len(names) - 1)


def worker(rank: int, world: int, run: Run, init: str | None = None) -> list[float]:
    """One process's training loop; returns its per-step losses (the mean over the whole batch)."""
    if run.batch % world:
        raise CardError(f"--batch {run.batch} does not split over {world} processes: give a multiple of {world}")
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", init_method=init or "env://", rank=rank,
                                world_size=world)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
                          if cuda else "cpu")
    dtype = {"float32": torch.float32, "float64": torch.float64}[run.dtype]
    card = CardModule(run.card, dtype=dtype, seed=run.seed, **run.sizes).to(device)
    model = torch.nn.parallel.DistributedDataParallel(card) if world > 1 else card
    opt = torch.optim.AdamW(model.parameters(), lr=run.lr, weight_decay=run.weight_decay)
    share = run.batch // world
    losses = []
    for step in range(run.steps):
        rows = torch.from_numpy(batch_rows(run, step)[rank * share:(rank + 1) * share]).to(device)
        x, y = rows[:, :-1], rows[:, 1:]
        logits = model(*model_inputs(card, x))
        loss = functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP averages the card's gradients over the processes here
        opt.step()
        mean = loss.detach().clone()
        if world > 1:
            dist.all_reduce(mean)
            mean /= world
        losses.append(float(mean))
        if rank == 0 and run.out is not None and (step + 1) % max(1, run.steps // 10) == 0:
            print(f"step {step + 1}/{run.steps}  loss {losses[-1]:.4f}  ({world} process{'es' * (world > 1)})",
                  flush=True)
    if rank == 0 and run.out is not None:
        save(card, losses, Path(run.out), world)
    if world > 1:  # all ranks done (rank 0 may still be saving) before the group goes: gloo aborts otherwise
        dist.barrier()
        del model
        dist.destroy_process_group()
    return losses


def save(card: CardModule, losses: list[float], out: Path, world: int) -> None:
    """weights.npz (the card's parameters by field name) and log.csv (the loss of every step)."""
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **{n: p.detach().cpu().numpy() for n, p in card.named_parameters()})
    atomic_write(out / "weights.npz", buf.getvalue())
    atomic_write(out / "log.csv", "step,train_loss,processes\n"
                 + "".join(f"{i + 1},{v:.9g},{world}\n" for i, v in enumerate(losses)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(run: Run, nproc: int = 1) -> None:
    """Train: inside torchrun (RANK and WORLD_SIZE set), as that process; otherwise as nproc
    processes on this machine, talking over the loopback interface."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        worker(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), run)
    elif nproc == 1:
        worker(0, 1, run)
    else:
        mp.spawn(local_worker, args=(nproc, run, f"tcp://127.0.0.1:{free_port()}"), nprocs=nproc, join=True)


def local_worker(rank: int, world: int, run: Run, init: str) -> None:
    """A process of --nproc: the machine's cores shared out (torchrun sets OMP_NUM_THREADS itself)."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    worker(rank, world, run, init)


def train_command(card: str, text: bytes, *, steps: int, batch: int, seq: int | None, lr: float,
                  weight_decay: float, values: dict, out_dir: str | None, seed: int, nproc: int,
                  dtype: str = "float32") -> Path:
    """`cardgen train CARD --engine torch`: the Run for the command's options, launched."""
    from ..compile.naming import ascii_name
    module = compile_card(card)
    sizes = {ascii_name(k): v for k, v in values.items()}
    for vocab in ("V", "N_V"):
        if vocab in {f.name for f in dataclasses.fields(module.Config)} and sizes.setdefault(vocab, 256) != 256:
            raise CardError(f"byte-level training needs {vocab} = 256, not {sizes[vocab]}")
    ctx = sizes.get("ctx") or sizes.get("ell_max")
    out = Path(out_dir or f"runs/{Path(card).stem}-torch")
    tokens = np.frombuffer(text, np.uint8)[: int(len(text) * 0.9)]  # the trainer's split: the last 10% held out
    run = Run(card=card, tokens=tokens, sizes=sizes, steps=steps, batch=batch, seq=seq or min(ctx or 64, 64),
              lr=lr, weight_decay=weight_decay, seed=seed, dtype=dtype, out=str(out))
    if len(tokens) <= run.seq + 1:
        raise CardError(f"the text has {len(tokens)} training bytes: too few for sequences of {run.seq}")
    launch(run, nproc)
    return out
