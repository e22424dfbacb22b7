"""Training: the loop of one stage (`loop`: fit, early stopping, resume, DDP) and the paper's two stages
with the study's run folders (`stages`).

The names below are the package's public face; inference never imports this package.
May import: `core`, `data`, `model`.
"""

from cemlib.training.loop import (
    LOG_COLUMNS,
    STAGES,
    EarlyStopping,
    FitResult,
    SettingsChanged,
    StageRun,
    evaluate,
    fit,
    image_loss,
    loader_for,
    make_sgd,
    resolved_training,
    uses_fused_sgd,
)
from cemlib.training.stages import (
    STAGE1_DIGEST,
    StagePlan,
    arch_from_profile,
    check_choices,
    check_training_data,
    fusion_dir,
    load_stage1,
    plan_stage1,
    plan_stage2,
    stage1_dir,
    stage_settings,
    train,
    train_stage1,
    train_with_shared_stage1,
)

__all__ = [
    "LOG_COLUMNS", "STAGE1_DIGEST", "STAGES", "EarlyStopping", "FitResult", "SettingsChanged", "StagePlan",
    "StageRun", "arch_from_profile",
    "check_choices", "check_training_data", "evaluate", "fit", "fusion_dir", "image_loss",
    "load_stage1", "loader_for", "make_sgd", "plan_stage1", "plan_stage2", "resolved_training", "stage1_dir",
    "stage_settings", "train",
    "train_stage1", "train_with_shared_stage1", "uses_fused_sgd",
]
