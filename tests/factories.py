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
