"""The maps and their faithfulness, notebook 05: Grad-CAM++ figures of called exams, the pointing game beside
no-model baselines, and lesion occlusion (does a call rest on the lesion?)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cemlib.core.devices import inference_device
from cemlib.core.settings import Settings
from cemlib.core.views import SIDES, VIEW_ORDER
from cemlib.core.vocab import FUSIONS, INPUTS
from cemlib.data import datasets as data
from cemlib.data.cache import TensorCache
from cemlib.data.manifest import Manifest
from cemlib.inference import cams, occlusion
from cemlib.model.checkpoints import load_model
from cemlib.results import build as results
from cemlib.results import report
from cemlib.study import prepare
from cemlib.study.steps import (
    EXTERNAL_MODELS,
    MAIN_MODEL,
    dataset_label,
    keep_figure,
    model_label,
    prepare_external,
    replicate_count,
    replicate_settings,
    tables_dir,
    train_model,
)
from cemlib.training import tracking


def _explained_malignant_exams(cfg: Settings, checkpoint: Path, inputs: str, manifest: Manifest,
                               cache: TensorCache, split: str | None, randomised: bool = False):
    """Yield (item, explanation) for every patient of a split with a malignant breast, with lesion masks;
    with `randomised`, the explanation also holds the maps of the model with its weights re-initialised
    ("randomised": one per view, for its own breast)."""
    model = load_model(checkpoint)
    model.to(inference_device(cfg.device)).eval()
    control = cams.randomised_copy(model, cfg.seed) if randomised else None
    dataset = data.PatientDataset(manifest, cache, split, inputs=inputs, return_masks=True)
    for index in range(len(dataset)):
        item = dataset[index]
        if bool(item["y"].any()):
            explained = cams.explain_exam(model, item["x"])
            if control is not None:
                explained["randomised"] = cams.explain_exam(control, item["x"])["own"]
            yield item, explained


def occlusion_table(cfg: Settings, threshold: float = 0.5) -> pd.DataFrame:
    """Faithfulness of every fusion model's calls: the mean probability of the correctly called malignant
    test breasts before and after their lesions are covered with the breast's median (internal test set)."""
    manifest, cache = prepare.prepare_data(cfg)
    rows = []
    models = [(fusion, inputs) for inputs in INPUTS for fusion in FUSIONS]
    for k, (fusion, inputs) in enumerate(models, start=1):
        tracking.note(f"occlusion: model {k} of {len(models)}, {model_label(fusion, inputs)}")
        checkpoint = train_model(cfg, fusion, inputs, manifest, cache)
        rows.append(occlusion_row(cfg, checkpoint, fusion, inputs, manifest, cache, threshold))
    table = pd.DataFrame(rows)
    results.write_table(table, tables_dir(cfg), "occlusion",
                        "Lesion occlusion of correctly called malignant breasts (internal test set)")
    return table


def occlusion_row(cfg: Settings, checkpoint: Path, fusion: str, inputs: str, manifest: Manifest,
                  cache: TensorCache, threshold: float = 0.5) -> dict[str, object]:
    """One model's occlusion numbers."""
    model = load_model(checkpoint)
    model.to(inference_device(cfg.device)).eval()
    dataset = data.PatientDataset(manifest, cache, "test", inputs=inputs, return_masks=True)
    exams = [item for item in (dataset[i] for i in range(len(dataset))) if bool(item["y"].any())]
    scores = occlusion.batch_probabilities(model, [item["x"] for item in exams])
    before, covered, sides = [], [], []
    for item, score in zip(exams, scores, strict=True):
        for k, side in enumerate(SIDES):
            if int(item["y"][k]) == 1 and score[side] >= threshold and bool(item["mask"].any()):
                before.append(score[side])
                covered.append(occlusion.occlude_lesions(item["x"], item["mask"], side))
                sides.append(side)
    after = [p[side] for p, side in zip(occlusion.batch_probabilities(model, covered), sides, strict=True)]
    mean_p = round(float(np.mean(before)), 3) if before else float("nan")
    mean_occluded = round(float(np.mean(after)), 3) if after else float("nan")
    return {"model": model_label(fusion, inputs), "breasts": len(before), "mean_p": mean_p,
            "mean_p_occluded": mean_occluded,
            "drop": round(mean_p - mean_occluded, 3) if before else float("nan")}


def pointing_game_table(cfg: Settings, threshold: float = 0.5) -> pd.DataFrame:
    """Pointing game on the internal test set: CEM model vs LE model, correctly called malignant breasts.

    With several replicates, every replicate's two models are scored as well, one row per model and
    replicate (`pointing_game_replicates`); the table returned is replicate 0's.
    """
    manifest, cache = prepare.prepare_data(cfg)
    table = _pointing_rows(cfg, manifest, cache, threshold)
    caption = "Grad-CAM++ pointing game (internal test set)"
    results.write_table(table, tables_dir(cfg), "pointing_game", caption)
    if replicate_count(cfg) > 1:
        per_seed = pd.concat(
            [_pointing_rows(replicate_settings(cfg, k) if k else cfg, manifest, cache, threshold)
             .assign(replicate=k) for k in range(replicate_count(cfg))], ignore_index=True)
        results.write_table(per_seed, tables_dir(cfg), "pointing_game_replicates",
                            "Grad-CAM++ pointing game of every replicate (internal test set)")
    return table


def _pointing_rows(cfg: Settings, manifest: Manifest, cache: TensorCache, threshold: float) -> pd.DataFrame:
    """One pointing-game row per input type (the mf_concat model of cfg's runs folder), beside the same
    model's maps with its weights randomised (a map that still points there shows the image, not the
    model) and two no-model baselines on the same views: the brightest smoothed DES point of the breast,
    and a uniformly random point in it."""
    rows = []
    cem_items = data.PatientDataset(manifest, cache, "test", inputs="cem", return_masks=True)
    index = {patient_id: i for i, patient_id in enumerate(cem_items.patients)}
    for k, inputs in enumerate(INPUTS, start=1):
        tracking.note(f"pointing game: model {k} of {len(INPUTS)}, {model_label('mf_concat', inputs)}")
        maps, controls, masks, des, breasts = [], [], [], [], []
        checkpoint = train_model(cfg, "mf_concat", inputs, manifest, cache)
        for item, explained in _explained_malignant_exams(cfg, checkpoint, inputs, manifest, cache, "test",
                                                          randomised=True):
            cem_x = (item["x"] if inputs == "cem" else cem_items[index[item["patient_id"]]]["x"]).numpy()
            for k, side in enumerate(SIDES):
                if int(item["y"][k]) != 1 or explained["scores"][side] < threshold:
                    continue
                for v, view in enumerate(VIEW_ORDER):
                    mask = item["mask"][v].numpy() > 0.5
                    if view.startswith(side) and mask.any():
                        maps.append(explained["own"][v])
                        controls.append(explained["randomised"][v])
                        masks.append(mask)
                        des.append(cem_x[v, 1])
                        breasts.append(cem_x[v, 0] > 0)
        rows.append(_pointing_row(model_label("mf_concat", inputs), maps, controls, masks, des, breasts))
    return pd.DataFrame(rows)


def _pointing_row(model: str, maps: list, controls: list, masks: list, des: list, breasts: list
                  ) -> dict[str, object]:
    """The pointing game of one model's maps, of its randomised-weights maps and of the two baselines on the
    same views."""
    if not maps:
        return {"model": model, "views scored": 0, "peak inside lesion": 0, "pointing game": float("nan"),
                "randomised weights": float("nan"), "brightest DES baseline": float("nan"),
                "random point baseline": float("nan")}
    masks = np.asarray(masks)
    hits = cams.pointing_hits(np.asarray(maps), masks)
    control = cams.pointing_hits(np.asarray(controls), masks)
    brightest = cams.pointing_hits(cams.brightest_point_maps(np.asarray(des), np.asarray(breasts)), masks)
    return {"model": model, "views scored": len(hits), "peak inside lesion": int(hits.sum()),
            "pointing game": round(float(hits.mean()), 3),
            "randomised weights": round(float(control.mean()), 3),
            "brightest DES baseline": round(float(brightest.mean()), 3),
            "random point baseline": round(cams.random_point_hit_rate(np.asarray(breasts), masks), 3)}


def cam_figures(cfg: Settings, where: str = "internal", cases: int = 2) -> list:
    """Figs. 5/6: LE, DES and Grad-CAM++ overlays of correctly called malignant exams."""
    tracking.note(f"Grad-CAM++ figures: {where}")
    internal = prepare.prepare_data(cfg)
    if where == "internal":
        sources = [("internal", MAIN_MODEL, *internal, "test")]
    else:
        sources = [(name, model, *prepare_external(cfg, name), None)
                   for name, model in EXTERNAL_MODELS.items()]
    figures = []
    for name, (fusion, inputs), manifest, cache, split in sources:
        checkpoint = train_model(cfg, fusion, inputs, *internal)
        shown = 0
        for item, explained in _explained_malignant_exams(cfg, checkpoint, inputs, manifest, cache, split):
            if shown >= cases:
                break
            scores = explained["scores"]
            if not any(int(item["y"][k]) == 1 and scores[s] >= 0.5 for k, s in enumerate(("L", "R"))):
                continue
            figure = cams.plot_exam_cams(item["x"], explained["own"], explained["scores"])
            # Only the study's pseudonym: a manifest id can be a folder name (GE layout).
            case = report.pseudonym(manifest.dataset, item["patient_id"])
            shown_as = "internal test set" if name == "internal" else dataset_label(cfg, name)
            figure.suptitle(f"{shown_as}: case {case}", fontsize=10)
            number = 5 if name == "internal" else 6
            figures.append(keep_figure(cfg, figure, f"fig{number}_cams_{name}_{shown + 1}"))
            shown += 1
        if shown == 0:
            shown_as = "Internal test set" if name == "internal" else dataset_label(cfg, name).capitalize()
            print(f"{shown_as}: no correctly called malignant exam in this run, so no Grad-CAM++ figure.")
    return figures
