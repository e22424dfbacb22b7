"""DistributedDataParallel training: two CPU processes (gloo) end with identical weights."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import Dataset

from cemlib import training
from cemlib.core import devices
from cemlib.core.settings import TrainSettings
from cemlib.model import checkpoints
from cemlib.model import networks as models
from cemlib.training import loop

SIZE = (64, 32)


class RandomPatients(Dataset):
    """Patients of random views and labels, the same on every rank (seeded)."""

    def __init__(self, n: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 4, 2, *SIZE, generator=generator)
        self.y = torch.randint(0, 2, (n, 2), generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict:
        return {"x": self.x[index], "y": self.y[index], "patient_id": f"P{index}"}


def without_seconds(history: list[dict]) -> list[dict]:
    """A training history without its wall-clock column."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _join(rank: int, world_size: int, port: int) -> devices.DistContext:
    """Join the process group the way a torchrun process does (environment variables), one thread each."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    return devices.init_distributed("cpu")


def _worker(rank: int, world_size: int, port: int, out: Path) -> None:
    """One rank: two epochs of fit on its shard; saves its weights, history and shard."""
    context = _join(rank, world_size, port)
    config = training.StageRun("stage2", training.resolved_training(
        TrainSettings(stage2_epochs=2, batch_size=3, progress=False, seed=0)))
    # Each rank initialises with its own seed: DDP must make the replicas equal (rank 0's weights).
    torch.manual_seed(100 + rank)
    model = models.build_model("mf_concat", 2, width=0.0625, global_pool=True, head=(16, 8), input_size=SIZE)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    train_loader = training.loader_for(RandomPatients(12, seed=1), config, shuffle=True, context=context)
    val_loader = training.loader_for(RandomPatients(5, seed=2), config, shuffle=False, context=context)
    train_loader.sampler.set_epoch(0)
    shard = list(train_loader.sampler)
    # The weights each rank validates with at the end of every epoch (before fit reloads the best epoch).
    epoch_states = []
    real_evaluate = training.evaluate

    def recording_evaluate(net, *args, **kwargs):
        epoch_states.append({k: v.clone() for k, v in net.state_dict().items()})
        return real_evaluate(net, *args, **kwargs)

    loop.evaluate = recording_evaluate
    result = training.fit(
        model, models.fusion_loss, train_loader, val_loader, config, out / "run", context=context
    )
    torch.save(
        {"state": model.state_dict(), "initial": initial, "history": result.history, "shard": shard,
         "epochs": epoch_states},
        out / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # Each rank trained on its own half of every epoch.
    assert len(ranks[0]["shard"]) == len(ranks[1]["shard"]) == 6
    assert sorted(ranks[0]["shard"] + ranks[1]["shard"]) == list(range(12))
    # Identical weights and batch-norm statistics on both ranks after every epoch, and training changed them.
    assert len(ranks[0]["epochs"]) == len(ranks[1]["epochs"]) == 2
    for state0, state1 in zip(ranks[0]["epochs"], ranks[1]["epochs"], strict=True):
        for key, value in state0.items():
            assert torch.equal(value, state1[key]), key
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    changed = [k for k, v in ranks[0]["epochs"][-1].items() if v.is_floating_point()
               and not torch.equal(v, ranks[0]["initial"][k])]
    assert any(k.endswith("weight") for k in changed) and any(k.endswith("running_mean") for k in changed)
    # Both took the same early-stopping decisions from the same gathered validation metrics.
    histories = [without_seconds(r["history"]) for r in ranks]
    assert histories[0] == histories[1] and len(histories[0]) == 2
    # Rank 0 alone wrote the checkpoints and the log; they hold the weights the ranks ended with.
    run = tmp_path / "run"
    files = sorted(p.name for p in run.iterdir())
    events = [f for f in files if f.startswith("events.out.tfevents.")]
    assert len(events) == 1  # TensorBoard's file, from rank 0 alone
    assert [f for f in files if f not in events] == ["best.pt", "last.pt", "log.csv", "settings.json"]
    record = json.loads((run / "settings.json").read_text())
    assert record["settings"][loop.GLOBAL_BATCH] == 2 * 3  # two processes of batch 3 each
    assert pd.read_csv(run / "log.csv")["epoch"].tolist() == [1, 2]
    best = checkpoints.load_checkpoint(run / "best.pt")
    for key, value in best["model"].items():
        assert torch.equal(value, ranks[0]["state"][key]), key


class Killed(Exception):
    """Stands for the process dying after an epoch's training, before its checkpoint."""


def _resume_worker(rank: int, world_size: int, port: int, out: Path) -> None:
    """Train two epochs uninterrupted, then again killed after epoch 1 and resumed; save both results."""
    context = _join(rank, world_size, port)
    config = training.StageRun("stage2", training.resolved_training(
        TrainSettings(stage2_epochs=2, batch_size=3, progress=False, seed=0)))

    def fresh_model():
        torch.manual_seed(7)
        return models.build_model("mf_concat", 2, width=0.0625, global_pool=True, head=(16, 8),
                                  input_size=SIZE, dropout=0.5)

    def run(folder: str, kill_at_epoch: int | None = None):
        train_loader = training.loader_for(RandomPatients(12, seed=1), config, shuffle=True, context=context)
        val_loader = training.loader_for(RandomPatients(5, seed=2), config, shuffle=False, context=context)
        model = fresh_model()
        real_evaluate, calls = training.evaluate, {"n": 0}

        def evaluate_or_die(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == kill_at_epoch:
                raise Killed
            return real_evaluate(*args, **kwargs)

        training.evaluate = evaluate_or_die
        try:
            result = training.fit(model, models.fusion_loss, train_loader, val_loader, config, out / folder,
                                  context=context)
        finally:
            training.evaluate = real_evaluate
        return model.state_dict(), result.history

    reference = run("reference")
    try:
        run("killed", kill_at_epoch=2)
    except Killed:
        pass
    # Something in this process draws random numbers between the kill and the restart.
    torch.rand(1000)
    resumed = run("killed")
    torch.save({"reference": reference, "resumed": resumed}, out / f"resume{rank}.pt")
    dist.destroy_process_group()


def test_a_resumed_multi_process_run_ends_like_an_uninterrupted_one(tmp_path):
    mp.spawn(_resume_worker, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    for rank in range(2):
        saved = torch.load(tmp_path / f"resume{rank}.pt", weights_only=True)
        (ref_state, ref_history), (state, history) = saved["reference"], saved["resumed"]
        assert without_seconds(history) == without_seconds(ref_history) and len(history) == 2
        for key, value in ref_state.items():
            assert torch.equal(value, state[key]), (rank, key)
    # Each rank's random-number state travels in last.pt, and the ranks draw different dropout masks.
    last = checkpoints.load_checkpoint(tmp_path / "killed" / "last.pt")
    by_rank = last["rng_by_rank"]
    assert len(by_rank) == 2 and not torch.equal(by_rank[0]["torch"], by_rank[1]["torch"])


def _nan_worker(rank: int, world_size: int, port: int, out: Path) -> None:
    """Rank 1 alone sees a NaN loss at its third step: both ranks must stop with the same step named."""
    context = _join(rank, world_size, port)
    losses = [torch.tensor(0.7), torch.tensor(0.6), torch.tensor(float("nan") if rank == 1 else 0.5)]
    try:
        loop.raise_if_nonfinite(losses, 10, "stage2", 4, context)
        message = "no error"
    except RuntimeError as exc:
        message = str(exc)
    (out / f"nan{rank}.txt").write_text(message)
    dist.destroy_process_group()


def test_a_nan_loss_in_one_process_stops_every_process(tmp_path):
    mp.spawn(_nan_worker, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    own, other = (tmp_path / "nan1.txt").read_text(), (tmp_path / "nan0.txt").read_text()
    assert "loss became nan at epoch 4, step 13" in own
    assert "not finite in another process at epoch 4, step 13" in other


def _data_wait_worker(rank: int, world_size: int, port: int, out: Path) -> None:
    """Rank 0 takes a while to write a file; the other rank must only look after the long-timeout barrier."""
    context = _join(rank, world_size, port)
    marker = out / "prepared"
    if context.is_main:
        time.sleep(1.0)
        marker.write_text("ready")
    devices.wait_for_rank0()
    (out / f"saw{rank}.txt").write_text(str(marker.is_file()))
    dist.destroy_process_group()


def test_other_ranks_wait_for_rank_0_to_prepare_the_data(tmp_path):
    mp.spawn(_data_wait_worker, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    assert [(tmp_path / f"saw{r}.txt").read_text() for r in range(2)] == ["True", "True"]
