"""Bad input refused before it costs anything: the size cap (header checked before any pixel is decoded)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless

from cemlib import imaging
from cemlib import manifest as manifest_mod
from cemlib.imaging import PreprocessError, read_pixels
from cemlib.sources import ge
from tests.factories import write_mg_dicom
from tests.test_sources_internal import write_ge_cohort


def _packbits_row(value: int, width: int) -> bytes:
    """One row of a constant byte plane as PackBits runs (DICOM RLE encodes each row separately)."""
    runs, left = [], width
    while left:
        n = min(128, left)
        runs.append(struct.pack("bB", 1 - n, value))
        left -= n
    return b"".join(runs)


def write_big_rle(path: Path, side: str, view: str, rows: int = 12000, cols: int = 12000) -> Path:
    """The reproduction: a valid RLE Lossless MG DICOM of a constant 16-bit image, 4.5 MB claiming
    rows x cols (1.67 GB once decoded as float32 would be needed)."""
    write_mg_dicom(path, np.zeros((8, 8), np.uint16), ImageLaterality=side, ViewPosition=view)
    ds = pydicom.dcmread(path)
    segments = [_packbits_row(value, cols) * rows for value in (0x07, 0xD0)]  # high byte, then low byte
    offsets = [64, 64 + len(segments[0])]
    header = struct.pack("<16L", 2, *offsets, *([0] * 13))
    ds.Rows, ds.Columns = rows, cols
    ds.PixelData = encapsulate([header + b"".join(segments)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def big_rle(tmp_path: Path) -> Path:
    return write_big_rle(tmp_path / "big" / "L_CC_LE.dcm", "L", "CC")


def test_big_rle_file_is_what_the_issue_describes(big_rle: Path):
    assert 4_000_000 < big_rle.stat().st_size < 5_000_000
    ds = pydicom.dcmread(big_rle, stop_before_pixels=True)
    assert (ds.Rows, ds.Columns, ds.file_meta.TransferSyntaxUID) == (12000, 12000, RLELossless)


def test_reading_refuses_an_oversized_image_before_decoding(big_rle: Path, monkeypatch):
    def no_decoding(self):
        raise AssertionError("pixel data decoded")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoding))
    with pytest.raises(PreprocessError, match=r"12000 x 12000 pixels .*size cap of 5000 x 5000") as caught:
        read_pixels(big_rle)
    assert str(big_rle) in str(caught.value)
    # the cap is a parameter: an installation with larger detectors raises it
    with pytest.raises(PreprocessError, match="pixel data decoded"):
        read_pixels(big_rle, max_size=(12000, 12000))


def test_pillow_images_are_capped_from_their_header(tmp_path: Path):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.new("L", (6000, 10)).save(path)
    with pytest.raises(PreprocessError, match=r"10 x 6000 pixels"):
        read_pixels(path)


def test_manifest_excludes_an_oversized_image_naming_its_size(tmp_path: Path, monkeypatch):
    def no_decoding(self):
        raise AssertionError("pixel data decoded")

    root = write_ge_cohort(tmp_path / "ge", 2)
    write_big_rle(root / "SYN0001" / "L_CC_LE.dcm", "L", "CC")
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoding))
    built = ge.scan(root, workers=1)
    rows = built.exclusions[built.exclusions.patient_id == "SYN0001"]
    big = rows[rows.kind == "too_large"]
    assert list(big.path) == ["SYN0001/L_CC_LE.dcm"]
    assert ("L CC LE is 12000 x 12000 pixels (Rows x Columns), above the size cap of 5000 x 5000"
            in big.reason.iloc[0])
    assert "SYN0001" not in set(built.breasts.patient_id) and "SYN0002" in set(built.breasts.patient_id)


def test_manifest_and_reader_share_the_default_cap():
    assert manifest_mod.MAX_IMAGE_SIZE == imaging.MAX_IMAGE_SIZE == (5000, 5000)
