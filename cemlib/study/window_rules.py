"""The DES window rule as an ablation (notebook 03): the study's rule beside another one on the same cohort,
split and training seeds, each rule's CEM models scored on the internal test set and their lesions occluded.

Why it is measured: under the authors' per-image rule an enhancing lesion raises its own image's window
and so darkens the whole windowed breast, a global cue a model can read instead of the lesion
(docs/training.md). The profile key `des_window_ablation` names the rule to compare with the study's
(`image` for the authors' rule); its models train in runs/<profile>/des_window-<rule>/ (each replicate
likewise, under the replicate's seed), the study's own models are reused. A profile without the key
shows the comparison its replicated reference run measured (data_manifest/des_window_<profile>.csv).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd

from cemlib.core.resources import DATA_MANIFEST
from cemlib.core.settings import Settings
from cemlib.pixels.settings import DES_WINDOWS, PreprocessSettings
from cemlib.results import build as results
from cemlib.results import check, faithfulness, stats
from cemlib.study import maps, prepare
from cemlib.study.steps import (
    model_label,
    replicate_count,
    replicate_seeds,
    replicate_settings,
    score_model,
    tables_dir,
    train_model,
)
from cemlib.training import tracking

#: The CEM models each rule trains: the one without a contralateral input and the paper's main model
#: (under the per-image rule only models that see the other breast gained, as the window leaks there).
ABLATION_FUSIONS = ("none", "mf_concat")
TABLE = "des_window"
COLUMNS = ("rule", "role", "model", "seed", "auc", "auc_low", "auc_high", "breasts", "mean_p",
           "mean_p_occluded", "drop")


def study_rule(cfg: Settings) -> str:
    """The DES window rule the study's models were trained under."""
    return cfg.preprocess.des_window or PreprocessSettings.des_window


def rule_settings(cfg: Settings, rule: str) -> Settings:
    """`cfg` with DES window rule `rule`, its models in their own runs folder (cohort and split unchanged)."""
    if rule == study_rule(cfg):
        return cfg
    return replace(cfg, runs=str(Path(cfg.runs) / f"des_window-{rule}"),
                   preprocess=replace(cfg.preprocess, des_window=rule))


def window_rule_table(cfg: Settings) -> pd.DataFrame:
    """Per rule, CEM model and training seed: internal test AUC (DeLong 95% CI) and lesion occlusion.

    Empty when the profile sets no `des_window_ablation`; written to tables/des_window.csv otherwise.
    """
    other = cfg.des_window_ablation
    if not other:
        return pd.DataFrame(columns=list(COLUMNS))
    own = study_rule(cfg)
    if other not in DES_WINDOWS:
        raise ValueError(f"profile {cfg.name!r}: des_window_ablation must be one of {DES_WINDOWS}, "
                         f"got {other!r}")
    if other == own:
        raise ValueError(f"profile {cfg.name!r}: des_window_ablation {other!r} is the study's own DES rule")
    rows = []
    for k, seed in enumerate(replicate_seeds(cfg)[:replicate_count(cfg)]):
        for rule, role in ((own, "study"), (other, "ablation")):
            run = replicate_settings(rule_settings(cfg, rule), k)
            manifest, cache = prepare.prepare_data(run)
            for fusion in ABLATION_FUSIONS:
                tracking.note(f"DES window {rule}: {model_label(fusion, 'cem')}, training seed {seed}")
                rows.append({"rule": rule, "role": role, "seed": seed,
                             **_model_row(run, fusion, manifest, cache)})
    table = pd.DataFrame(rows)[list(COLUMNS)]
    results.write_table(table, tables_dir(cfg), TABLE,
                        "DES window rule: CEM models under both rules, internal test set")
    return table


def _model_row(run: Settings, fusion: str, manifest, cache) -> dict[str, object]:
    """One model's AUC with its CI and its occlusion numbers."""
    checkpoint = train_model(run, fusion, "cem", manifest, cache)
    scores = score_model(run, checkpoint, fusion, "cem", manifest, cache, "test", "internal")
    auc = stats.auc_ci(scores["label"], scores["score"])
    occluded = maps.occlusion_row(run, checkpoint, fusion, "cem", manifest, cache)
    return {**occluded, "auc": round(auc.estimate, 3), "auc_low": round(auc.low, 3),
            "auc_high": round(auc.high, 3)}


def reference_table_path(profile_name: str) -> Path:
    """data_manifest/des_window_<profile>.csv: the per-seed comparison of the profile's reference run."""
    return check.des_window_reference_path(profile_name)


def keep_as_reference(tables: str | Path, profile_name: str) -> Path | None:
    """Copy a replicated run's des_window.csv beside the profile's reference (None when the run has none)."""
    source = Path(tables) / f"{TABLE}.csv"
    if not source.exists():
        return None
    target = reference_table_path(profile_name)
    shutil.copyfile(source, target)
    return target


def shown_comparison(cfg: Settings, table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(summary, where it comes from): this run's comparison, else the one of the profile's reference run."""
    if not table.empty:
        return faithfulness.window_rule_summary(table), "measured in this run"
    path = reference_table_path(cfg.name)
    if not path.exists():
        return pd.DataFrame(), "not measured for this profile (set `des_window_ablation` to measure it)"
    return (faithfulness.window_rule_summary(pd.read_csv(path)),
            f"not run here; measured by the profile's replicated reference run ({DATA_MANIFEST}/{path.name})")
