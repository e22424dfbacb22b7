"""Bad input refused before it costs anything: the size cap (header checked before any pixel is decoded)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless

from cemlib.data import manifest as manifest_mod
from cemlib.data.sources import ge
from cemlib.pixels import imaging
from cemlib.pixels.imaging import read_pixels
from cemlib.pixels.window import PreprocessError
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


# ------------------------------------------------------------------- headers contradicting their pixels


@pytest.fixture(scope="module")
def phantom_le() -> np.ndarray:
    """A phantom LE image of the smoke cohort (uint16, raw 14-bit values, left breast)."""
    from cemlib.synthetic import render_exam, sample_patient

    spec = sample_patient(0, "bilateral benign", 0)
    return render_exam(spec, 0.08).images[("L", "CC", "LE")]


RAW = (1500.0, 3300.0)


def test_monochrome1_on_uninverted_pixels_is_refused(tmp_path: Path, phantom_le: np.ndarray):
    lying = write_mg_dicom(tmp_path / "m1.dcm", phantom_le, PhotometricInterpretation="MONOCHROME1")
    with pytest.raises(PreprocessError, match="PhotometricInterpretation MONOCHROME1 contradicts the pixels"):
        read_pixels(lying)
    # pixels really stored inverted are read back as the original
    honest = write_mg_dicom(tmp_path / "m1_ok.dcm", (16383 - phantom_le).astype(np.uint16),
                            PhotometricInterpretation="MONOCHROME1")
    np.testing.assert_array_equal(read_pixels(honest), phantom_le.astype(np.float32))


def test_bits_stored_below_the_stored_values_is_refused_naming_the_tag(tmp_path: Path,
                                                                      phantom_le: np.ndarray):
    """Before: BitsStored 8 on 14-bit data was rejected with a misleading 'chest wall on the right'."""
    path = write_mg_dicom(tmp_path / "b8.dcm", phantom_le, BitsStored=8, HighBit=7)
    with pytest.raises(PreprocessError, match=r"BitsStored 8 contradicts the pixel data: stored values "
                                              r"reach \d+, which needs 1[234] bits") as caught:
        read_pixels(path)
    assert "chest wall" not in str(caught.value)


def test_rescale_set_on_unchanged_pixels_is_refused(tmp_path: Path, phantom_le: np.ndarray):
    lying = write_mg_dicom(tmp_path / "lying.dcm", phantom_le, RescaleSlope=2, RescaleIntercept=100)
    with pytest.raises(PreprocessError, match=r"RescaleSlope 2 / RescaleIntercept 100 contradict the pixels"):
        read_pixels(lying, expected_range=RAW)
    # the valid equivalent encoding (stored (v - 100) / 2 with slope 2, intercept 100) is accepted
    stored = np.floor((phantom_le.astype(np.float64) - 100) / 2).clip(0).astype(np.uint16)
    honest = write_mg_dicom(tmp_path / "honest.dcm", stored, RescaleSlope=2, RescaleIntercept=100)
    pixels = read_pixels(honest, expected_range=RAW)
    assert np.abs(pixels - phantom_le).max() <= 100  # only the background, clipped at 0 stored, differs


def test_8_bit_reencode_of_raw_data_is_refused_where_raw_values_are_expected(tmp_path: Path,
                                                                            phantom_le: np.ndarray):
    low, high = int(phantom_le.min()), int(phantom_le.max())
    scaled = np.rint((phantom_le.astype(np.float64) - low) * 255 / (high - low)).astype(np.uint8)
    eight = write_mg_dicom(tmp_path / "8bit.dcm", scaled)  # min-max re-encode to 0..255
    with pytest.raises(PreprocessError, match=r"BitsStored 8: the pixel values span 0\.\.255, below the raw "
                                              r"detector range 1500\.\.3300"):
        read_pixels(eight, expected_range=RAW)
    assert read_pixels(eight, expected_range=None).max() < 256  # no range (own-range windows): it is read
    with pytest.raises(PreprocessError, match="BitsStored 8: the pixel values span"):
        read_pixels(eight)  # the default range is the kit's detector range, 1500..3300


def test_contradicting_headers_become_exclusions_naming_the_tag(tmp_path: Path, phantom_le: np.ndarray):
    """Through `cem preprocess`: each lying LE image excludes its patient with a reason naming the tag."""
    from cemlib.data.cache import TensorCache
    from cemlib.data.manifest import assemble
    from cemlib.pixels.settings import PreprocessSettings

    lies = {"P1": {"PhotometricInterpretation": "MONOCHROME1"}, "P2": {"BitsStored": 8, "HighBit": 7},
            "P3": {"RescaleSlope": 2, "RescaleIntercept": 100}, "P4": {}}
    images = []
    for patient, tags in lies.items():
        for side in "LR":
            for view in ("CC", "MLO"):
                pixels = (phantom_le if side == "L" else phantom_le[:, ::-1]).copy()
                pixels[-1, pixels.shape[1] // 2] = len(images)  # one background pixel: no two files alike
                rel = f"{patient}/{side}_{view}_LE.dcm"
                extra = tags if (side, view) == ("L", "CC") else {}
                write_mg_dicom(tmp_path / rel, np.ascontiguousarray(pixels), ImageLaterality=side,
                               ViewPosition=view, **extra)
                images.append({"patient_id": patient, "side": side, "view": view, "energy": "LE", "path": rel,
                               "rows": pixels.shape[0], "cols": pixels.shape[1]})
    breasts = [{"patient_id": p, "side": s, "label": 0} for p in lies for s in "LR"]
    built = assemble("test", tmp_path, images, breasts, energies=("LE",), workers=1)
    result = TensorCache(tmp_path / "cache", PreprocessSettings(size=(64, 32))).fill(built, progress=False)
    reasons = result.exclusions.set_index("patient_id")["reason"]
    assert "PhotometricInterpretation MONOCHROME1" in reasons["P1"]
    assert "BitsStored 8" in reasons["P2"]
    assert "RescaleSlope 2 / RescaleIntercept 100" in reasons["P3"]
    assert "P4" not in reasons.index and result.built == 13
