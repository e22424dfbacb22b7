"""The image-attainable ceiling: how well a reader who is shown where every finding is can call each breast
from the pixels alone, at the images' stored resolution and at the network's input size.

The reader is told the outline of every finding of every view (the synthetic cohort's
`lesion_views.csv`: centre, radii and angle in the stored image's pixels, benign and malignant findings
alike), so it never has to detect anything. From the pixels it measures, per finding and view, the
contrast of the finding against a ring of tissue around it (mean inside minus mean of the ring, in units
of the ring's standard deviation) in the LE image and in the DES image, and the finding's area. A breast
takes the largest value of each over its findings and views; a breast without a finding shows nothing
(zeros). A logistic regression on these measures, cross-validated by patient, scores each breast; its
per-breast AUC (DeLong CI) is what an ideal reader of these images attains with LE features only and with
LE and DES features. A network trained on the same images should be judged against it, not against 1.

At the network's input size the images are preprocessed exactly as the cache does (crop, flip, window,
resize; the exam's shared DES window) and the finding and ring outlines go through the same crop, flip and
resize, so the measures are area-weighted means of what the network sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cemlib.core.settings import Settings
from cemlib.core.views import SIDES, VIEWS
from cemlib.data.manifest import Manifest
from cemlib.pixels.imaging import exam_des_bounds, preprocess_mask, preprocess_pair, read_pixels
from cemlib.pixels.settings import RAW_RANGE, PreprocessSettings
from cemlib.results import build as results
from cemlib.results import stats
from cemlib.study import prepare
from cemlib.study.steps import tables_dir

#: The measures each input type's reader may use.
FEATURES = {"LE": ("le_contrast", "extent"), "CEM": ("le_contrast", "des_contrast", "extent")}
MEASURES = ("le_contrast", "des_contrast", "extent")
#: The ring of tissue a finding is compared with: between these multiples of its radii.
RING = (1.5, 3.0)
LESION_FILE = "lesion_views.csv"
TABLE_COLUMNS = ("resolution", "inputs", "breasts", "malignant", "auc", "ci_low", "ci_high")
CAPTION = ("Image-attainable ceiling: per-breast AUC (DeLong 95% CI) of a reader told where every finding "
           "is, from LE (and DES) contrast and area, cross-validated by patient, on the internal test set")


def ellipse_mask(shape: tuple[int, int], cx: float, cy: float, rx: float, ry: float, angle: float,
                 scale: float = 1.0) -> np.ndarray:
    """Pixels inside an ellipse (centre, radii in pixels, angle in degrees), its radii times `scale`."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    theta = np.deg2rad(angle)
    dx, dy = cols - cx, rows - cy
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return (u / (rx * scale)) ** 2 + (v / (ry * scale)) ** 2 <= 1.0


def weighted_contrast(image: np.ndarray, inside: np.ndarray, ring: np.ndarray) -> float:
    """(weighted mean inside - weighted mean of the ring) / the ring's weighted SD (0 when undefined)."""
    w_in, w_ring = inside.sum(), ring.sum()
    if w_in <= 0 or w_ring <= 0:
        return 0.0
    mean_in = float((image * inside).sum() / w_in)
    mean_ring = float((image * ring).sum() / w_ring)
    sd_ring = float(np.sqrt((((image - mean_ring) ** 2) * ring).sum() / w_ring))
    return (mean_in - mean_ring) / sd_ring if sd_ring > 1e-6 else 0.0


def finding_masks(shape: tuple[int, int], finding, breast: np.ndarray) -> dict[str, np.ndarray]:
    """Float masks of one finding in a stored image: inside it, and the ring of tissue around it (kept
    within the breast)."""
    args = (shape, finding.cx, finding.cy, finding.rx, finding.ry, finding.angle)
    ring = ellipse_mask(*args, scale=RING[1]) & ~ellipse_mask(*args, scale=RING[0]) & breast
    return {"inside": ellipse_mask(*args).astype(np.float32), "ring": ring.astype(np.float32)}


def finding_measures(le: np.ndarray, des: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """One finding's LE and DES contrast against its ring, and its area in pixels."""
    inside, ring = masks["inside"], masks["ring"]
    return {"le_contrast": weighted_contrast(le, inside, ring),
            "des_contrast": weighted_contrast(des, inside, ring), "extent": float(inside.sum())}


def breast_region(le: np.ndarray) -> np.ndarray:
    """The breast in a stored LE image: pixels above 5% of its grey-level range (the phantom's air is 0)."""
    low, high = float(le.min()), float(le.max())
    return le > low + 0.05 * (high - low)


def view_measures(le: np.ndarray, des: np.ndarray, findings: pd.DataFrame, side: str,
                  settings: PreprocessSettings | None, des_bounds: tuple[float, float] | None) -> list[dict]:
    """Each finding's LE and DES contrast and area in one view: stored pixels (settings None) or the
    network's input (preprocessed as the cache does, outlines warped the same way)."""
    breast = breast_region(le)
    if settings is not None:
        le_seen, des_seen = preprocess_pair(le, des, side, settings, des_bounds=des_bounds)
    measures = []
    for finding in findings.itertuples():
        masks = finding_masks(le.shape, finding, breast)
        if settings is None:
            measures.append(finding_measures(le, des, masks))
            continue
        seen = {name: preprocess_mask(mask, le, side, settings) for name, mask in masks.items()}
        measures.append(finding_measures(le_seen, des_seen, seen))
    return measures


def breast_measures(manifest: Manifest, lesions: pd.DataFrame, patients: Iterable[str],
                    settings: PreprocessSettings | None = None) -> pd.DataFrame:
    """One row per breast of `patients`: label and the largest of each measure over its findings and views,
    on the stored images (settings None) or at the network's input."""
    return measures_at(manifest, lesions, patients, [settings])[0]


def measures_at(manifest: Manifest, lesions: pd.DataFrame, patients: Iterable[str],
                sizes: Sequence[PreprocessSettings | None]) -> list[pd.DataFrame]:
    """`breast_measures` under each of `sizes`, every image read once for all of them."""
    images = manifest.images.set_index(["patient_id", "side", "view", "energy"])
    labels = manifest.breasts.set_index(["patient_id", "side"])["label"]
    expected = next((s.checked_range() for s in sizes if s is not None), RAW_RANGE)
    rows: list[list[dict]] = [[] for _ in sizes]
    for patient in patients:
        views = _exam_pixels(manifest, images, patient, expected)
        for settings, found in zip(sizes, rows, strict=True):
            found += _breast_rows(views, lesions, patient, labels, settings)
    return [pd.DataFrame(found) for found in rows]


def _exam_pixels(manifest: Manifest, images: pd.DataFrame, patient: str, expected: tuple[float, float]
                 ) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(side, view) -> (LE, DES) stored pixels of one patient's exam."""
    def read(side: str, view: str, energy: str) -> np.ndarray:
        path = manifest.image_path(images.loc[(patient, side, view, energy)])
        return read_pixels(path, expected_range=expected)

    return {(side, view): (read(side, view, "LE"), read(side, view, "DES"))
            for side in SIDES for view in VIEWS if (patient, side, view, "LE") in images.index}


def _breast_rows(views: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], lesions: pd.DataFrame,
                 patient: str, labels: pd.Series, settings: PreprocessSettings | None) -> list[dict]:
    """One row per labelled breast of an exam: the largest of each measure over its findings and views."""
    bounds = None if settings is None else exam_des_bounds([des for _, des in views.values()], settings)
    rows = []
    for side in SIDES:
        if (patient, side) not in labels.index:
            continue
        found = [m for (s, view), (le, des) in views.items() if s == side
                 for m in view_measures(le, des, _findings(lesions, patient, side, view), side, settings,
                                        bounds)]
        best = {key: max([m[key] for m in found], default=0.0) for key in MEASURES}
        rows.append({"patient_id": patient, "side": side, "label": int(labels.loc[(patient, side)]), **best})
    return rows


def _findings(lesions: pd.DataFrame, patient: str, side: str, view: str) -> pd.DataFrame:
    """The findings of one view in lesion_views.csv."""
    keep = (lesions["patient_id"] == patient) & (lesions["side"] == side) & (lesions["view"] == view)
    return lesions[keep]


def can_cross_validate(measures: pd.DataFrame) -> bool:
    """Whether patient-grouped folds can each train on both classes: two patients with a malignant breast
    and two with a benign one at least (fewer leave the row without an AUC)."""
    if measures.empty:
        return False
    patients = measures.groupby("label")["patient_id"].nunique()
    return len(patients) == 2 and int(patients.min()) >= 2


def reader_scores(measures: pd.DataFrame, inputs: str, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold malignancy scores of a logistic-regression reader on the input type's measures."""
    columns = list(FEATURES[inputs])
    x, y = measures[columns].to_numpy(float), measures["label"].to_numpy(int)
    groups = measures["patient_id"].to_numpy()
    splits = min(folds, int(measures.groupby("label")["patient_id"].nunique().min()))
    scores = np.full(len(y), np.nan)
    cv = StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=seed)
    for train, test in cv.split(x, y, groups):
        reader = make_pipeline(StandardScaler(), LogisticRegression())
        reader.fit(x[train], y[train])
        scores[test] = reader.predict_proba(x[test])[:, 1]
    return scores


def ceiling_table(manifest: Manifest, lesions: pd.DataFrame, settings: PreprocessSettings,
                  split: str | None = "test", seed: int = 0) -> pd.DataFrame:
    """The reader's per-breast AUC (DeLong 95% CI) for LE and CEM measures, at the stored resolution and
    at the network's input size, on the breasts of `split` (None: every breast)."""
    breasts = manifest.breasts if split is None else manifest.breasts[manifest.breasts["split"] == split]
    patients = sorted(set(breasts["patient_id"]))
    height, width = settings.size
    resolutions = ("stored images", f"network input {height} x {width}")
    rows = []
    for resolution, measures in zip(resolutions, measures_at(manifest, lesions, patients, [None, settings]),
                                    strict=True):
        y = measures["label"].to_numpy(int) if len(measures) else np.zeros(0, int)
        enough = can_cross_validate(measures)
        for inputs in FEATURES:
            interval = (stats.auc_ci(y, reader_scores(measures, inputs, seed=seed)) if enough
                        else stats.Interval(*[np.nan] * 3))
            rows.append({"resolution": resolution, "inputs": inputs, "breasts": len(y),
                         "malignant": int(y.sum()), "auc": interval.estimate, "ci_low": interval.low,
                         "ci_high": interval.high})
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def read_lesions(root: str | Path) -> pd.DataFrame | None:
    """A synthetic dataset's lesion_views.csv (None for a dataset without one, e.g. real data)."""
    path = Path(root) / LESION_FILE
    return pd.read_csv(path, dtype={"patient_id": str}) if path.is_file() else None


def ceiling_step(cfg: Settings, manifest: Manifest, split: str = "test") -> pd.DataFrame | None:
    """Notebook 01: the ceiling table of the profile's internal cohort, written as image_ceiling (None, and
    nothing written, for a dataset without finding outlines such as real data)."""
    lesions = read_lesions(manifest.root)
    if lesions is None:
        return None
    table = ceiling_table(manifest, lesions, prepare.preprocess_settings(cfg), split, seed=cfg.seed)
    results.write_table(table, tables_dir(cfg), "image_ceiling", CAPTION)
    return table
