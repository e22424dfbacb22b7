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


def looks_sentences(run: RunFacts) -> list[str]:
    """The summary's 'Where the model looks' block (empty without maps in the run)."""
    return [s for s in (pointing_sentence(run), occlusion_sentence(run)) if s]
