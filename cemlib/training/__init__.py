"""Training: the loop of one stage (`loop`: fit, early stopping, resume, DDP) and the paper's two stages
with the study's run folders and `cem train` (`stages`).

The names below are the package's public face; prediction never imports this package.
"""

from cemlib.training.loop import (
    LOG_COLUMNS,
    STAGES,
    EarlyStopping,
    FitConfig,
    FitResult,
    SettingsChanged,
    evaluate,
    fit,
    image_loss,
    loader_for,
    make_sgd,
    uses_fused_sgd,
)
from cemlib.training.stages import (
    STAGE1_DIGEST,
    StagePlan,
    arch_from_profile,
    check_choices,
    check_training_data,
    configure_parser,
    fusion_dir,
    load_stage1,
    plan_stage1,
    plan_stage2,
    run_cli,
    stage1_dir,
    stage_settings,
    train,
    train_stage1,
    train_with_shared_stage1,
    wait_for_rank0,
)

__all__ = [
    "LOG_COLUMNS", "STAGE1_DIGEST", "STAGES", "EarlyStopping", "FitConfig", "FitResult", "SettingsChanged",
    "StagePlan", "arch_from_profile",
    "check_choices", "check_training_data", "configure_parser", "evaluate", "fit", "fusion_dir", "image_loss",
    "load_stage1", "loader_for", "make_sgd", "plan_stage1", "plan_stage2", "run_cli", "stage1_dir",
    "stage_settings", "train",
    "train_stage1", "train_with_shared_stage1", "uses_fused_sgd", "wait_for_rank0",
]
