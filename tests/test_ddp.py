"""DistributedDataParallel training: two CPU processes (gloo) end with identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import Dataset

from cemlib import models, training

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out: Path) -> None:
    """One rank, set up the way torchrun sets up its processes (environment variables)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    context = training.init_distributed("cpu")
    config = training.FitConfig(stage="stage2", epochs=2, batch_size=3, progress=False, seed=0)
    # Each rank initialises with its own seed: DDP must make the replicas equal (rank 0's weights).
    torch.manual_seed(100 + rank)
    model = models.build_model("mf_concat", 2, width=0.0625, global_pool=True, head=(16, 8), input_size=SIZE)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    train_loader = training.make_loader(RandomPatients(12, seed=1), config, shuffle=True, context=context)
    val_loader = training.make_loader(RandomPatients(5, seed=2), config, shuffle=False, context=context)
    train_loader.sampler.set_epoch(0)
    shard = list(train_loader.sampler)
    # The weights each rank validates with at the end of every epoch (before fit reloads the best epoch).
    epoch_states = []
    real_evaluate = training.evaluate

    def recording_evaluate(net, *args, **kwargs):
        epoch_states.append({k: v.clone() for k, v in net.state_dict().items()})
        return real_evaluate(net, *args, **kwargs)

    training.evaluate = recording_evaluate
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
    drop_time = [[{k: v for k, v in row.items() if k != "seconds"} for row in r["history"]] for r in ranks]
    assert drop_time[0] == drop_time[1] and len(drop_time[0]) == 2
    # Rank 0 alone wrote the checkpoints and the log; they hold the weights the ranks ended with.
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt", "log.csv"]
    assert pd.read_csv(run / "log.csv")["epoch"].tolist() == [1, 2]
    best = training.load_checkpoint(run / "best.pt")
    for key, value in best["model"].items():
        assert torch.equal(value, ranks[0]["state"][key]), key
