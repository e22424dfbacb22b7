"""The internal synthetic cohort on disk: GE-layout DICOMs, labels, lesion tables and masks (`cem synth`).

Same seed, same bytes: every random draw comes from a per-patient `numpy.random.SeedSequence` stream, UIDs
come from the seed, dates are fixed, so serial and parallel runs write identical files.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cemlib import __version__
from cemlib.core.fileio import atomic_write_bytes, atomic_write_text
from cemlib.core.views import ENERGIES, SIDES, VIEWS
from cemlib.synthetic.cohort import DEFAULT_PATIENTS, LESIONS_FILE, lesions_table, plant_sign, sample_cohort
from cemlib.synthetic.phantom import PatientSpec, grid_shape, pixel_spacing, render_exam
from cemlib.synthetic.writer import (
    GENERATOR_VERSION,
    finish_dir,
    interrupted,
    prepare_cohort_dir,
    write_patients,
)

DIGITAL_MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"


def _uid(seed: int, scale: float, *parts: str) -> str:
    sources = ["cemlib-synthetic", GENERATOR_VERSION, str(seed), f"{scale:.6g}", *parts]
    return generate_uid(entropy_srcs=sources)


def dicom_bytes(spec: PatientSpec, side: str, view: str, energy: str, pixels: np.ndarray, seed: int,
                scale: float) -> bytes:
    """Encode one image as a GE-style CEM mammography DICOM (fake PHI in the patient module)."""
    sop_uid = _uid(seed, scale, spec.patient_id, "image", side, view, energy)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DIGITAL_MG_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    low = energy == "LE"
    kind = "LOW_ENERGY" if low else "RECOMBINED"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL" if low else "DERIVED", "PRIMARY", "", kind]
    ds.SOPClassUID, ds.SOPInstanceUID = DIGITAL_MG_FOR_PRESENTATION, sop_uid
    for tag in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        setattr(ds, tag, spec.study_date)
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "093000"
    ds.AccessionNumber = f"A{int(spec.mrn) % 999983:06d}"
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.ManufacturerModelName = "Senographe Essential"
    ds.InstitutionName = "SYNTHETIC PHANTOM"
    ds.StudyDescription = "CESM"
    ds.SeriesDescription = f"{kind} {side} {view}"
    ds.PatientName = spec.name
    ds.PatientID = spec.mrn
    ds.PatientBirthDate = spec.birth_date
    ds.PatientSex = "F"
    ds.PatientAge = f"{spec.age:03d}Y"
    ds.BodyPartExamined = "BREAST"
    ds.ViewPosition = view
    ds.ImageLaterality = side
    ds.BurnedInAnnotation = "NO"
    ds.StudyInstanceUID = _uid(seed, scale, spec.patient_id, "study")
    ds.SeriesInstanceUID = _uid(seed, scale, spec.patient_id, "series", side, view, energy)
    ds.StudyID = "1"
    ds.SeriesNumber = 1 + SIDES.index(side) * 4 + VIEWS.index(view) * 2 + ENERGIES.index(energy)
    ds.InstanceNumber = 1
    # chest wall on the left for left breasts (columns run anterior), on the right for right breasts
    column_dir = "A" if side == "L" else "P"
    row_dir = ("R" if side == "L" else "L") if view == "CC" else ("FR" if side == "L" else "FL")
    ds.PatientOrientation = [column_dir, row_dir]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    spacing = f"{pixel_spacing(scale):.6g}"
    ds.PixelSpacing = [spacing, spacing]
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 14, 13, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.WindowCenter, ds.WindowWidth = "2400", "1800"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def png_bytes(mask: np.ndarray) -> bytes:
    """Encode a boolean mask as an 8-bit PNG (255 inside)."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    return buffer.getvalue()


def write_patient(spec: PatientSpec, out: Path, scale: float, seed: int) -> list[dict]:
    """Render one patient and write its 8 DICOMs and lesion masks; return its lesion rows."""
    # The internal cohort's masks hold its malignant findings: a CAM peak or an occlusion on a benign
    # second finding is no evidence that a model found the cancer.
    exam = render_exam(spec, scale, malignant_only=True)
    folder = out / spec.patient_id
    for (side, view, energy), pixels in exam.images.items():
        atomic_write_bytes(folder / f"{side}_{view}_{energy}.dcm",
                           dicom_bytes(spec, side, view, energy, pixels, seed, scale))
    for (side, view), mask in exam.masks.items():
        if mask.any():
            atomic_write_bytes(out / "masks" / spec.patient_id / f"{side}_{view}.png", png_bytes(mask))
    rows = []
    for lesion in exam.lesions:
        rows.append({"patient_id": spec.patient_id, **lesion})
    return rows


def _write_patient_task(args: tuple[PatientSpec, Path, float, int]) -> list[dict]:
    return write_patient(*args)


#: Columns of lesion_views.csv (one row per finding and view; lesions.csv's are cohort.LESION_COLUMNS).
LESION_VIEW_COLUMNS = ("patient_id", "side", "view", "label", "kind", "cx", "cy", "rx", "ry", "angle",
                       "iodine")


def labels_table(specs: list[PatientSpec]) -> pd.DataFrame:
    """labels.csv: one row per breast (label, BI-RADS, pathology, age, density)."""
    return pd.DataFrame([
        {"patient_id": s.patient_id, "side": side, "label": b.label, "birads": b.birads,
         "pathology": b.pathology, "age": s.age, "density": s.density}
        for s in specs for side, b in s.breasts.items()])


def write_cohort(out: str | os.PathLike, patients: int = DEFAULT_PATIENTS, seed: int = 0, scale: float = 0.08,
                 workers: int | None = None, images: bool = True, control: bool = False) -> Path:
    """Write a synthetic CEM cohort in the GE layout (DICOMs, labels.csv, lesions.csv, masks, cohort.json).

    With images=False only the tables and cohort.json are written (no pixels are rendered); such a
    folder is refused as a training cohort by `check_generated`.
    """
    out = Path(out).resolve()
    rows, cols = grid_shape(scale)
    specs = sample_cohort(patients, seed)
    if control:  # the positive control: an unambiguous sign planted in every malignant breast
        specs = [plant_sign(spec) for spec in specs]
    prepare_cohort_dir(out, {s.patient_id for s in specs} if images else set())
    if images:
        tasks = [(spec, out, scale, seed) for spec in specs]
        view_rows = write_patients(_write_patient_task, tasks, workers, "synth")
        views = pd.DataFrame([r for group in view_rows for r in group], columns=list(LESION_VIEW_COLUMNS))
        atomic_write_text(out / "lesion_views.csv", views.to_csv(index=False, float_format="%.2f"))
    else:
        (out / "lesion_views.csv").unlink(missing_ok=True)
    atomic_write_text(out / "labels.csv", labels_table(specs).to_csv(index=False))
    atomic_write_text(out / LESIONS_FILE, lesions_table(specs).to_csv(index=False))
    settings = {"generator": "cemlib.synthetic", "version": GENERATOR_VERSION, "cemlib_version": __version__,
                "format": "ge", "seed": seed, "scale": scale, "patients": patients, "images": images,
                "rows": rows, "cols": cols, **({"control": True} if control else {}),
                "pixel_spacing_mm": round(pixel_spacing(scale), 6), "pydicom_version": pydicom.__version__}
    atomic_write_text(out / "cohort.json", json.dumps(settings, indent=2) + "\n")
    finish_dir(out)
    return out


def check_generated(root: str | os.PathLike, marker: str, settings: dict[str, object],
                    manifest_dir: str | os.PathLike) -> None:
    """Raise a ValueError when data cemlib wrote under `root` (recorded in `marker`) differ from `settings`.

    The recorded generator version must be today's too: a cohort left on disk by an earlier generator or
    other profile settings would otherwise be reused silently, and every later step would report on data
    the profile does not describe.
    """
    path = Path(root) / marker
    if not path.is_file() or interrupted(root):  # nothing to check: a killed writer's folder is written again
        return
    recorded = json.loads(path.read_text())
    if recorded.get("images") is False:
        raise ValueError(f"{path} records a cohort written without images (cem synth --no-images): delete "
                         f"{Path(root)} and the manifest folder {Path(manifest_dir)}, or point the profile "
                         "elsewhere")
    expected = {"version": GENERATOR_VERSION, **settings}
    differing = {key: (recorded.get(key), value) for key, value in expected.items()
                 if recorded.get(key) != value}
    if differing:
        found = ", ".join(f"{key} {old!r}" for key, (old, _) in differing.items())
        wanted = ", ".join(f"{key} {new!r}" for key, (_, new) in differing.items())
        raise ValueError(
            f"{path} records a cohort written with {found}, but the profile asks for {wanted}: delete "
            f"{Path(root)} and the manifest folder {Path(manifest_dir)} to have both written again, or "
            "point the profile elsewhere"
        )
