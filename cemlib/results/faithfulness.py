"""Where the main model looks, for the report's summary: its pointing game beside its controls, and what
covering the lesions does to its calls (the pointing_game and occlusion tables of notebook 05)."""

from __future__ import annotations

import math

import pandas as pd

from cemlib.core.vocab import model_label
from cemlib.results.runfacts import MAIN_MODEL, RunFacts

#: The pointing game's controls besides the brightest DES point: (how the sentence names it, column).
CONTROLS = (("with its weights randomised", "randomised weights"),
            ("a random point", "random point baseline"))


#: How the summary names each DES window rule (the profile's `preprocess.des_window` values).
RULE_NAMES = {"image": "authors' per-image", "exam": "exam-wide", "fixed": "fixed"}
#: Below this drop of the mean probability, covering the lesions did not move a model's calls.
OCCLUSION_MOVES = 0.05


def _row(table: pd.DataFrame | None, model: str) -> pd.Series | None:
    if table is None or "model" not in table:
        return None
    rows = table[table["model"].map(str) == model]
    return None if rows.empty else rows.iloc[0]


def _value(row: pd.Series, column: str) -> float:
    return float(row.get(column, math.nan))


def pointing_sentence(run: RunFacts, model: str = MAIN_MODEL) -> str:
    """The model's pointing game beside the randomised-weights, brightest-DES and random-point controls."""
    row = _row(run.pointing, model)
    if row is None or int(row["views scored"]) == 0:
        return ""
    game, brightest = float(row["pointing game"]), float(row["brightest DES baseline"])
    compared = ("above" if game > brightest else "level with" if game == brightest else "below")
    hits, views = int(row["peak inside lesion"]), int(row["views scored"])
    controls = [f"{label} in {_value(row, column):.2f}" for label, column in CONTROLS
                if not math.isnan(_value(row, column))]
    return (f"{model_label(model)}: its Grad-CAM++ map peaks inside the lesion in {hits} of {views} views "
            f"of correctly called malignant breasts (pointing game {game:.2f}), {compared} the brightest DES "
            f"point of the same views ({brightest:.2f})" + (f"; {', '.join(controls)}" if controls else "")
            + ".")


def occlusion_sentence(run: RunFacts, model: str = MAIN_MODEL) -> str:
    """What covering the lesions of the model's called malignant breasts does to their probability."""
    row = _row(run.occlusion, model)
    if row is None or int(row["breasts"]) == 0:
        return ""
    return (f"Covering the lesions of its {int(row['breasts'])} correctly called malignant breasts moves "
            f"their mean probability from {float(row['mean_p']):.2f} to {float(row['mean_p_occluded']):.2f}.")


def window_sentence(run: RunFacts, model: str = MAIN_MODEL) -> str:
    """The main model under the other DES window rule beside the study's, paired by seed ('' without it)."""
    table = run.des_window
    if table is None or table.empty or model not in set(table["model"]):
        return ""
    rows = table[table["model"] == model]
    study, other = rows[rows["role"] == "study"], rows[rows["role"] == "ablation"]
    if study.empty or other.empty:
        return ""
    summary = window_rule_summary(rows).set_index("role")
    mine, theirs = summary.loc["study"], summary.loc["ablation"]
    unmoved = int((other["drop"].fillna(0.0) < OCCLUSION_MOVES).sum())
    where = "its replicated reference run" if run.des_window_from_reference else "this run"
    own, alternative = _rule(study), _rule(other)
    return (f"DES window rule ({where}, {_seeds(int(theirs['seeds']))}): under the {alternative} window the "
            f"{model_label(model)} model's internal AUC averaged {theirs['auc_mean']:.2f} "
            f"({theirs['auc_min']:.2f}-{theirs['auc_max']:.2f}) against {mine['auc_mean']:.2f} "
            f"({mine['auc_min']:.2f}-{mine['auc_max']:.2f}) under the {own} window, lower in "
            f"{int(theirs['seeds_below_study'])} of {int(theirs['seeds'])} seeds; covering the lesions of "
            f"its called malignant breasts lowered their probability by {theirs['drop_mean']:.2f} on average "
            f"(by less than {OCCLUSION_MOVES:g} in {unmoved} of {len(other)} seeds), against "
            f"{mine['drop_mean']:.2f} under the {own} window.")


def _rule(rows: pd.DataFrame) -> str:
    return RULE_NAMES.get(str(rows["rule"].iloc[0]), str(rows["rule"].iloc[0]))


def _seeds(count: int) -> str:
    return f"{count} training seed" + ("" if count == 1 else "s")


def looks_sentences(run: RunFacts) -> list[str]:
    """The summary's 'Where the model looks' block (empty without maps in the run)."""
    return [s for s in (pointing_sentence(run), occlusion_sentence(run), window_sentence(run)) if s]


def window_rule_summary(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per model and rule over the seeds: AUC mean and range, occlusion drop mean and range, and against the
    study's rule on the same seeds the mean AUC difference and the seeds in which this rule scores lower."""
    if per_seed.empty:
        return pd.DataFrame()
    study = per_seed[per_seed["role"] == "study"].set_index(["model", "seed"])["auc"]
    rows = []
    for (model, rule, role), group in per_seed.groupby(["model", "rule", "role"], sort=False):
        paired = group.set_index(["model", "seed"])["auc"] - study.reindex(group.set_index(["model", "seed"])
                                                                          .index)
        rows.append({"model": model, "rule": rule, "role": role, "seeds": len(group),
                     "auc_mean": group["auc"].mean(), "auc_min": group["auc"].min(),
                     "auc_max": group["auc"].max(), "drop_mean": group["drop"].mean(),
                     "drop_min": group["drop"].min(), "drop_max": group["drop"].max(),
                     "auc_minus_study": paired.mean(), "seeds_below_study": int((paired < 0).sum())})
    return pd.DataFrame(rows).round(3)
