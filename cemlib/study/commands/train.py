"""`cem train`: train stage 1 (the CNN) and stage 2 (a fusion) of one model, on one device or under
torchrun."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch.distributed as dist

from cemlib.core.devices import init_distributed, use_threads
from cemlib.core.outputs import check_output_folder
from cemlib.core.settings import add_override_option, load_profile, parse_overrides
from cemlib.core.vocab import FUSIONS, INPUTS
from cemlib.model.checkpoints import load_checkpoint
from cemlib.study.prepare import data_for
from cemlib.training.stages import (
    fusion_dir,
    runs_dir,
    stage1_dir,
    train,
    train_stage1,
    train_with_shared_stage1,
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `cem train`."""
    parser.add_argument("--profile", default="smoke", help="profile name or YAML file (default: smoke)")
    parser.add_argument("--fusion", choices=FUSIONS, default="mf_concat", help="fusion type")
    parser.add_argument("--inputs", choices=INPUTS, default="cem",
                        help="cem = LE + DES (2 channels), le = low energy only")
    parser.add_argument("--run-dir", help="run folder (default: runs/<profile>/models/<inputs>_<fusion>, "
                        "with stage 1 shared in models/<inputs>_stage1)")
    parser.add_argument("--stage1", metavar="CKPT",
                        help="reuse this stage-1 checkpoint (same inputs, encoder) instead of training one "
                        "(default: the shared stage 1 in models/<inputs>_stage1, trained when missing)")
    parser.add_argument("--stage1-only", action="store_true", help="train stage 1 only (into RUN/stage1)")
    add_override_option(parser)


def run_cli(args: argparse.Namespace) -> int:
    """Train one model; print where its best checkpoint and log are."""
    profile = load_profile(args.profile, parse_overrides(args.overrides))
    run_dir = Path(args.run_dir) if args.run_dir else None
    check_output_folder(run_dir or runs_dir(profile) / "models")  # before any data is read or epoch run
    use_threads(profile.threads)
    try:
        # Rank 0 prepares the data while the other ranks of a torchrun launch wait.
        manifest, cache = data_for(profile, None, None, init_distributed(profile.device))
        if args.stage1_only:
            folder = run_dir / "stage1" if run_dir else stage1_dir(profile, args.inputs)
            best = train_stage1(profile, args.inputs, folder, manifest=manifest, cache=cache)
        elif run_dir is None and args.stage1 is None:
            best = train_with_shared_stage1(profile, args.fusion, args.inputs, manifest, cache)
        else:
            run_dir = run_dir or fusion_dir(profile, args.fusion, args.inputs)
            best = train(profile, args.fusion, args.inputs, run_dir, args.stage1, manifest=manifest,
                         cache=cache)
        if not dist.is_initialized() or dist.get_rank() == 0:
            checkpoint = load_checkpoint(best)
            metrics = checkpoint.get("metrics", {})
            print(f"best {checkpoint['stage']} checkpoint: {best}")
            print(
                f"  epoch {checkpoint['epoch']}: val_loss {metrics.get('val_loss', math.nan):.4f}, "
                f"val_auc {metrics.get('val_auc', math.nan):.3f}"
            )
            print(f"  log: {best.parent / 'log.csv'}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
