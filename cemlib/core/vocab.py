"""The study's words, defined once: fusions, inputs and their energies, patient classes, model names,
dataset names.

Views, sides and energies live in `cemlib.core.views`. Every table, figure, log line, folder and
predictions file names a model through `model_name`, so the same model is spelled the same way
everywhere it appears (in the form that place needs). What a reader sees (the report, figure titles and
legends) names a model in its "label" form and a dataset through `dataset_name`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

#: The paper's input size (rows, cols) after crop and resize, and its FC head before the per-view feature
#: (the authors' code: flatten 65,536 -> 4096 -> 1024 -> 512): the defaults of the settings, the
#: preprocessing and the network alike.
PAPER_INPUT_SIZE = (512, 256)
PAPER_HEAD = (4096, 1024, 512)
#: The four fusion heads of the paper, in its table order.
FUSIONS = ("none", "left_right", "mf_average", "mf_concat")
#: The stage-1 single-view classifier's name where a fusion name is expected.
IMAGE_MODEL = "image"
#: How the paper's tables and figures write each fusion.
FUSION_LABELS = {
    "none": "No fusion",
    "left_right": "Left-right fusion",
    "mf_average": "MF fusion (average)",
    "mf_concat": "MF fusion (concatenation)",
}

#: Input choices of a model: "cem" = low energy + recombined (two channels per view), "le" = low energy.
INPUTS = ("le", "cem")
#: inputs -> the energies each view stacks, in channel order (LE in channel 0, DES in channel 1).
INPUT_ENERGIES: dict[str, tuple[str, ...]] = {"cem": ("LE", "DES"), "le": ("LE",)}


def input_channels(inputs: str) -> int:
    """Number of channels per view for an inputs choice (the count of its energies)."""
    check_inputs(inputs)
    return len(INPUT_ENERGIES[inputs])


def check_inputs(inputs: str) -> None:
    """Raise a ValueError for an unknown inputs name."""
    if inputs not in INPUT_ENERGIES:
        raise ValueError(f"unknown inputs {inputs!r}; expected one of {tuple(INPUT_ENERGIES)}")


def check_fusion(fusion: str, image_model: bool = True) -> None:
    """Raise a ValueError for an unknown fusion name (the stage-1 image model allowed when asked)."""
    allowed = (*FUSIONS, IMAGE_MODEL) if image_model else FUSIONS
    if fusion not in allowed:
        raise ValueError(f"unknown fusion {fusion!r}; expected one of {FUSIONS}")


def inputs_for_channels(channels: int) -> str:
    """The inputs choice whose views have this many channels."""
    for inputs, energies in INPUT_ENERGIES.items():
        if len(energies) == channels:
            return inputs
    raise ValueError(f"no inputs choice has {channels} channel(s) per view")


# ------------------------------------------------------------------------------------------ model names

NameForm = Literal["column", "label", "folder"]


def model_name(fusion: str, inputs: str, form: NameForm = "column") -> str:
    """A model's name: "column" 'CEM mf_concat' (tables' model column, logs), "label" 'CEM MF fusion
    (concatenation)' (table rows, figure legends), "folder" 'cem_mf_concat' (run folders, files)."""
    if form == "column":
        return f"{inputs.upper()} {fusion}"
    if form == "label":
        return f"{inputs.upper()} {FUSION_LABELS.get(fusion, fusion)}"
    if form == "folder":
        return f"{inputs.lower()}_{fusion}"
    raise ValueError(f"unknown model name form {form!r}; expected column, label or folder")


def parse_model_name(name: str) -> tuple[str, str] | None:
    """(fusion, inputs) of a "column" model name such as 'CEM mf_concat'; None for any other text."""
    inputs, sep, fusion = name.partition(" ")
    if not sep or inputs.lower() not in INPUT_ENERGIES or not fusion:
        return None
    return fusion, inputs.lower()


def model_label(name: str) -> str:
    """The "label" form of a "column" model name (other text unchanged)."""
    parsed = parse_model_name(name)
    return model_name(*parsed, form="label") if parsed else name


#: The paper's eight models in "column" form, LE first, fusions in table order.
MODELS = tuple(model_name(fusion, inputs) for inputs in INPUTS for fusion in FUSIONS)


# ------------------------------------------------------------------------------------------ patient classes

#: A patient's class by the number of malignant breasts (0, 1, 2); the split is stratified by it.
PATIENT_CLASSES = ("bilateral benign", "unilateral malignant", "bilateral malignant")


def patient_class(malignant_breasts: int, breasts: int = 2) -> str:
    """The class of a patient with this many malignant breasts (a plain note when not two breasts)."""
    if breasts != 2:
        return f"{breasts} breast(s) recorded"
    return PATIENT_CLASSES[min(int(malignant_breasts), 2)]


def patient_classes(breasts: pd.DataFrame, by: Sequence[str] = ("patient_id",),
                    count_breasts: bool = True, sort: bool = False) -> pd.DataFrame:
    """One row per patient (grouped by `by`): split, n_breasts, n_malignant and patient_class.

    With count_breasts=False a patient with one recorded breast still gets a class from its malignant
    count (the patient-level split stratifies every patient it is given). Rows follow the first
    appearance of each patient, or `by`'s order when `sort`.
    """
    labels = pd.to_numeric(breasts["label"]).astype(int)
    frame = breasts.assign(label=(labels == 1).astype(np.int64))
    if "split" not in frame:
        frame = frame.assign(split="")
    patients = frame.groupby(list(by), sort=sort).agg(
        split=("split", "first"), n_breasts=("label", "size"), n_malignant=("label", "sum")
    ).reset_index()
    counts = patients["n_breasts"] if count_breasts else [2] * len(patients)
    patients["patient_class"] = [patient_class(m, n) for m, n in
                                 zip(patients["n_malignant"], counts, strict=True)]
    return patients


# ------------------------------------------------------------------------------------------ datasets

#: The study's datasets by key (the manifest's `dataset` of the external releases), in report order.
DATASETS = ("internal", "inbreast", "cddcesm")
#: How a reader reads each dataset's name; an external set written by the kit is a "synthetic replica of".
DATASET_LABELS = {"internal": "internal test set", "inbreast": "INbreast", "cddcesm": "CDD-CESM"}
REPLICA_PREFIX = "synthetic replica of "


def dataset_key(name: str) -> str | None:
    """The key of a dataset however it is spelt ('CDD-CESM', 'cddcesm', 'synthetic replica of INbreast');
    None for text that names no dataset of the study."""
    text = str(name).strip().lower()
    if text.startswith(REPLICA_PREFIX):
        text = text[len(REPLICA_PREFIX):]
    squeezed = "".join(ch for ch in text if ch.isalnum())
    for key, label in DATASET_LABELS.items():
        if squeezed in (key, "".join(ch for ch in label.lower() if ch.isalnum())):
            return key
    return "internal" if squeezed in ("internal", "synthetic") else None


def dataset_name(name: str, replica: bool = False) -> str:
    """A dataset as a reader reads it: 'internal test set', 'CDD-CESM', or with `replica` (an external
    set the kit wrote from the phantom) 'synthetic replica of CDD-CESM'. Unknown names come back as given."""
    key = dataset_key(name)
    if key is None:
        return str(name)
    label = DATASET_LABELS[key]
    return REPLICA_PREFIX + label if replica and key != "internal" else label
