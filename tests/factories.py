"""Small files for tests: a minimal valid mammography DICOM with chosen tags and pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DIGITAL_MG_STORAGE = "1.2.840.10008.5.1.4.1.1.1.2"


def write_mg_dicom(path: str | Path, pixels: np.ndarray, **tags) -> Path:
    """Write `pixels` (uint16 or uint8, H x W) as an MG DICOM; keyword tags override the defaults."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.ascontiguousarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DIGITAL_MG_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientID = "TEST-MRN-0001"
    ds.PatientName = "TEST^PATIENT"
    ds.ImageLaterality = "L"
    ds.ViewPosition = "CC"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "", "LOW_ENERGY"]
    ds.SeriesDescription = "LOW_ENERGY L CC"
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = pixels.shape
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated = bits
    ds.BitsStored = 8 if bits == 8 else 14
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [0.1, 0.1]
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def tiny_study(base: Path, patients: int, seed: int, scale: float = 0.08, size: tuple[int, int] = (64, 32),
               ratios: tuple[float, float, float] = (0.5, 0.25, 0.25)) -> dict:
    """A small synthetic cohort, its saved manifest and a filled cache: {base, root, manifest, cache}."""
    from cemlib import synthetic
    from cemlib.data import manifest as manifest_mod
    from cemlib.data import sources
    from cemlib.data.cache import TensorCache
    from cemlib.pixels.settings import PreprocessSettings

    root = synthetic.write_cohort(base / "cohort", patients=patients, seed=seed, scale=scale, workers=1)
    built, _ = sources.build(root, "ge", seed=0, ratios=ratios, workers=1)
    built.save(base / "manifest")
    cache = TensorCache(base / "cache", PreprocessSettings(size=size))
    failed = cache.fill(built, workers=1, progress=False).failed
    if failed:
        raise RuntimeError(f"{failed} views of the tiny cohort failed preprocessing")
    manifest = manifest_mod.Manifest.load(base / "manifest")
    return {"base": base, "root": root, "manifest": manifest, "cache": cache}


def calibrate_batch_norm(model, x):
    """Set BN running statistics from one batch (as training would), then eval mode.

    An untrained VGG in eval mode gives nearly the same output for every input; calibrated, its outputs
    depend on the input, so property tests (left-right swap, CAM agreement) cannot pass trivially.
    """
    import torch
    from torch import nn

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()


def save_calibrated_checkpoint(model, study: dict, name: str, inputs: str, size: tuple[int, int]) -> Path:
    """A model with batch norm calibrated on the tiny study's views, saved as `cem train` saves it."""
    import torch

    from cemlib.data.datasets import PatientDataset
    from cemlib.model import checkpoints

    views = PatientDataset(study["manifest"], study["cache"], inputs=inputs)
    calibrate_batch_norm(model.encoder, torch.stack([item["x"] for item in views]).flatten(0, 1))
    model.eval()
    meta = {"inputs": inputs, "preprocess": {"size": list(size), "cache": str(study["cache"].cache_dir)}}
    return checkpoints.save_model(model, study["base"] / f"{name}.pt", meta=meta)
