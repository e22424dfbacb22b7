"""Nothing lost under mistakes in a DICOM file: every header check on low-energy and DES images alike, the
size cap before anything large is inflated or decoded, and valid encodings (deflated, big-endian, float
pixel data) read exactly as pydicom decodes them. Every file is built here with pydicom."""

from __future__ import annotations

import re
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless

from cemlib.data.manifest import assemble
from cemlib.data.sources import ge
from cemlib.data.sources.dicom import ImageRejected, check_mg_header
from cemlib.pixels import sizecap
from cemlib.pixels.imaging import preprocess_pair, read_image, read_pixels
from cemlib.pixels.settings import PreprocessSettings
from cemlib.pixels.window import PreprocessError
from tests.factories import write_mg_dicom
from tests.test_sources_internal import write_ge_cohort

RAW = (1500.0, 3300.0)
SETTINGS = PreprocessSettings(size=(64, 32))
ENERGY_TAGS = {
    "LE": {"ImageType": ["ORIGINAL", "PRIMARY", "", "LOW_ENERGY"]},
    "DES": {"ImageType": ["DERIVED", "PRIMARY", "", "RECOMBINED"]},
}


@pytest.fixture(scope="module")
def phantom() -> dict[str, np.ndarray]:
    """The L CC low-energy and DES images of one phantom patient (uint16, raw 14-bit values)."""
    from cemlib.synthetic import render_exam, sample_patient

    exam = render_exam(sample_patient(0, "bilateral benign", 0), 0.08)
    return {energy: exam.images[("L", "CC", energy)] for energy in ("LE", "DES")}


def write(path: Path, pixels: np.ndarray, energy: str = "LE", side: str = "L", view: str = "CC",
          **tags) -> Path:
    """An MG DICOM of `pixels` saying `energy` in ImageType and SeriesDescription."""
    kind = "LOW_ENERGY" if energy == "LE" else "RECOMBINED"
    return write_mg_dicom(path, np.ascontiguousarray(pixels), ImageLaterality=side, ViewPosition=view,
                          SeriesDescription=f"{kind} {side} {view}", **ENERGY_TAGS[energy], **tags)


def write_rle(path: Path, pixels: np.ndarray, energy: str = "LE", **lies) -> Path:
    """RLE Lossless, encoded by pydicom from the true values; `lies` are set after encoding."""
    write(path, pixels, energy)
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless, np.ascontiguousarray(pixels))
    for key, value in lies.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_big_endian(path: Path, pixels: np.ndarray, energy: str = "LE", swapped: bool = False) -> Path:
    """Explicit VR Big Endian; `swapped` stores the pixel bytes little-endian (a corrupt conversion)."""
    write(path, pixels, energy)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = np.ascontiguousarray(pixels).astype("<u2" if swapped else ">u2").tobytes()
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, enforce_file_format=True)
    return path


def write_deflated(path: Path, pixels: np.ndarray, energy: str = "LE") -> Path:
    """Deflated Explicit VR Little Endian, deflated by pydicom's writer."""
    write(path, pixels, energy)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def write_float(path: Path, pixels: np.ndarray, energy: str = "LE") -> Path:
    """The values as 32-bit FloatPixelData (no BitsStored, HighBit or PixelRepresentation)."""
    write(path, pixels, energy)
    ds = pydicom.dcmread(path)
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated = 32
    ds.FloatPixelData = np.ascontiguousarray(pixels).astype("<f4").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def eight_bit(pixels: np.ndarray) -> np.ndarray:
    """A min-max re-encode to 0..255, as an export to 8 bits does."""
    low, high = float(pixels.min()), float(pixels.max())
    return np.rint((pixels.astype(np.float64) - low) * 255 / (high - low)).astype(np.uint8)


# --------------------------------------------------------------- every check on LE and DES images alike

#: name: (writer(path, pixels, energy), what the refusal says)
LIES = {
    "8-bit re-encode": (
        lambda p, px, e: write(p, eight_bit(px), e),
        r"BitsStored 8: the pixel values span 0\.\.255, below the raw detector range 1500\.\.3300"),
    "slope 2 / intercept 100 on unrescaled pixels": (
        lambda p, px, e: write(p, px, e, RescaleSlope=2, RescaleIntercept=100),
        "RescaleSlope 2 / RescaleIntercept 100 contradict the pixels"),
    "in-range slope 1.2 / intercept 400": (
        lambda p, px, e: write(p, px, e, RescaleSlope=1.2, RescaleIntercept=400),
        r"RescaleSlope 1\.2 / RescaleIntercept 400 contradict the pixels"),
    "RescaleSlope 1.2": (lambda p, px, e: write(p, px, e, RescaleSlope=1.2, RescaleIntercept=0),
                         r"RescaleSlope 1\.2 / RescaleIntercept 0 contradict the pixels"),
    "BitsStored 8 in RLE": (lambda p, px, e: write_rle(p, px, e, BitsStored=8, HighBit=7),
                            r"BitsStored 8 contradicts the pixel data: stored values reach \d+"),
    "MONOCHROME1 on uninverted pixels": (
        lambda p, px, e: write(p, px, e, PhotometricInterpretation="MONOCHROME1"),
        "PhotometricInterpretation MONOCHROME1 contradicts the pixels"),
    "big-endian file holding little-endian pixels": (
        lambda p, px, e: write_big_endian(p, px, e, swapped=True),
        r"BitsStored 14 contradicts the pixel data: stored values reach \d+, which needs 16 bits"),
}


@pytest.mark.parametrize("energy", ["LE", "DES"])
@pytest.mark.parametrize("lie", list(LIES))
def test_lying_header_is_refused_on_either_energy(tmp_path: Path, phantom, energy: str, lie: str):
    writer, reason = LIES[lie]
    path = writer(tmp_path / f"L_CC_{energy}.dcm", phantom[energy], energy)
    with pytest.raises(PreprocessError, match=reason) as caught:
        read_pixels(path, expected_range=SETTINGS.checked_range())  # as the cache reads either energy
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "TEST^PATIENT" not in message and "TEST-MRN" not in message  # the header's patient fields
    with pytest.raises(PreprocessError, match=reason):
        read_pixels(path)  # as one-exam mode reads a DES image: the kit's detector range by default


@pytest.mark.parametrize("energy", ["LE", "DES"])
def test_in_range_rescale_lies_would_move_the_model_input(phantom, energy: str):
    """Why they are refused: read as the header says, the windowed input moves by a fifth or more."""
    honest = preprocess_pair(phantom["LE"], phantom["DES"], "L", SETTINGS)[energy == "DES"]
    for slope, intercept in ((1.2, 400.0), (1.2, 0.0)):
        lied = {e: phantom[e] * slope + intercept if e == energy else phantom[e] for e in ("LE", "DES")}
        moved = preprocess_pair(lied["LE"].astype(np.float32), lied["DES"].astype(np.float32), "L",
                                SETTINGS)[energy == "DES"]
        assert np.abs(moved - honest).mean() / honest.mean() > 0.15, (energy, slope, intercept)


@pytest.mark.parametrize("energy", ["LE", "DES"])
def test_honest_encodings_of_either_energy_are_accepted(tmp_path: Path, phantom, energy: str):
    pixels = phantom[energy]
    # a real rescale: stored (v - 100) / 2, outside the detector range until slope and intercept apply
    stored = np.floor((pixels.astype(np.float64) - 100) / 2).clip(0).astype(np.uint16)
    rescaled = read_pixels(write(tmp_path / "r.dcm", stored, energy, RescaleSlope=2, RescaleIntercept=100))
    assert np.abs(rescaled - pixels)[pixels > 1000].max() <= 1
    # a near-identity calibration moves the tissue by less than 2% of the range: kept
    shifted = read_pixels(write(tmp_path / "s.dcm", pixels, energy, RescaleSlope=1, RescaleIntercept=20))
    np.testing.assert_array_equal(shifted, pixels.astype(np.float32) + 20)
    rle = write_rle(tmp_path / "rle.dcm", pixels, energy)
    np.testing.assert_array_equal(read_pixels(rle), pixels.astype(np.float32))
    inverted = write(tmp_path / "m1.dcm", (16383 - pixels).astype(np.uint16), energy,
                     PhotometricInterpretation="MONOCHROME1")
    np.testing.assert_array_equal(read_pixels(inverted), pixels.astype(np.float32))


@pytest.mark.parametrize("energy", ["LE", "DES"])
def test_rescale_check_holds_for_monochrome1_and_under_a_voi_lut(tmp_path: Path, phantom, energy: str):
    pixels = phantom[energy].astype(np.int64)
    inverted = (16383 - pixels).astype(np.uint16)  # stored inverted, as MONOCHROME1 says
    lying = write(tmp_path / "m1_lie.dcm", inverted, energy, PhotometricInterpretation="MONOCHROME1",
                  RescaleSlope=1.2, RescaleIntercept=0)
    with pytest.raises(PreprocessError, match=r"RescaleSlope 1\.2 / RescaleIntercept 0 contradict"):
        read_pixels(lying)
    # an honest MONOCHROME1 rescale of 16 bits: nominal range -300..130770 after slope 2, intercept -300,
    # so the value read back is 130770 - 2 * stored; stored = (130770 - v) / 2 lies far above the range
    honest = write(tmp_path / "m1_ok.dcm", ((130770 - pixels) // 2).astype(np.uint16), energy,
                   PhotometricInterpretation="MONOCHROME1", RescaleSlope=2, RescaleIntercept=-300,
                   BitsStored=16, HighBit=15)
    assert np.abs(read_pixels(honest) - pixels).max() <= 1
    windowed = write(tmp_path / "voi.dcm", phantom[energy], energy, RescaleSlope=1.2, RescaleIntercept=400,
                     WindowCenter=2400, WindowWidth=1800)
    with pytest.raises(PreprocessError, match=r"RescaleSlope 1\.2 / RescaleIntercept 400 contradict"):
        read_pixels(windowed, voi_lut=True)


def test_detector_range_is_a_profile_setting(tmp_path: Path, phantom):
    assert PreprocessSettings().checked_range() == RAW
    assert PreprocessSettings(window_range=(1200, 4800)).checked_range() == (1200.0, 4800.0)
    assert PreprocessSettings(window_source="image").checked_range() is None
    own = PreprocessSettings(window_source="image", detector_range=[1000, 5000])
    assert own.checked_range() == (1000.0, 5000.0)
    assert PreprocessSettings.from_profile({"preprocess": {"detector_range": [1000, 5000]}}).detector_range \
        == (1000.0, 5000.0)
    assert PreprocessSettings(detector_range=(1000, 5000)).digest() != PreprocessSettings().digest()
    with pytest.raises(ValueError, match="detector_range"):
        PreprocessSettings(detector_range=(3300, 1500))
    # a detector whose tissue lies elsewhere: the same rescale is judged against that range
    lying = write(tmp_path / "x.dcm", phantom["DES"], "DES", RescaleSlope=1.2, RescaleIntercept=0)
    assert read_pixels(lying, expected_range=(2500.0, 6000.0)).max() > 2500  # stored values not in range


def test_profile_section_takes_the_detector_range():
    from cemlib.core.settings import PreprocessSettingsSection

    section = PreprocessSettingsSection(detector_range=(1000.0, 5000.0))
    assert section.detector_range == (1000.0, 5000.0)


def _exam_files(folder: Path, phantom, lie: str | None, salt: int = 0) -> list[dict]:
    """The eight images of one exam; one background pixel marks each (`salt`: the patient), so no two
    images of the study are copies (the manifest excludes copies)."""
    rows = []
    views = [(side, view, energy) for side in "LR" for view in ("CC", "MLO") for energy in ("LE", "DES")]
    for k, (side, view, energy) in enumerate(views):
        pixels = (phantom[energy] if side == "L" else phantom[energy][:, ::-1]).copy()
        pixels[0, 8 * salt + k] += 1
        path = folder / f"{side}_{view}_{energy}.dcm"
        if lie and (side, view, energy) == ("L", "CC", "DES"):
            LIES[lie][0](path, pixels, energy)
        else:
            write(path, pixels, energy, side, view)
        rows.append({"side": side, "view": view, "energy": energy, "path": path})
    return rows


def test_lying_des_headers_exclude_their_patient_in_the_cache_build(tmp_path: Path, phantom):
    from cemlib.data.cache import TensorCache

    patients = {"P0": None, **{f"P{i + 1}": lie for i, lie in enumerate(LIES)}}
    images = []
    for salt, (patient, lie) in enumerate(patients.items()):
        for row in _exam_files(tmp_path / patient, phantom, lie, salt):
            images.append({**row, "patient_id": patient, "path": row["path"].relative_to(tmp_path).as_posix(),
                           "rows": phantom["LE"].shape[0], "cols": phantom["LE"].shape[1]})
    breasts = [{"patient_id": p, "side": s, "label": 0} for p in patients for s in "LR"]
    built = assemble("test", tmp_path, images, breasts, energies=("LE", "DES"), workers=1)
    result = TensorCache(tmp_path / "cache", SETTINGS).fill(built, progress=False)
    reasons = result.exclusions.groupby("patient_id")["reason"].apply(" | ".join)
    assert "P0" not in reasons.index and result.built >= 4
    for patient, lie in patients.items():
        if lie:
            assert re.search(LIES[lie][1], reasons[patient]), (lie, reasons[patient])
            assert f"test/{patient} L CC DES" in reasons[patient] and str(tmp_path) not in reasons[patient]


def test_lying_des_header_is_refused_in_one_exam_mode(tmp_path: Path, phantom):
    from cemlib.inference.exam import ExamFile, load_views

    def views(folder: Path, lie: str | None) -> dict:
        files = {(r["side"], r["view"], r["energy"]): ExamFile(r["path"], r["side"], r["view"], r["energy"],
                                                                "GE/synthetic")
                 for r in _exam_files(folder, phantom, lie)}
        return {f"{s}{v}": (files[(s, v, "LE")], files[(s, v, "DES")]) for s in "LR" for v in ("CC", "MLO")}

    assert tuple(load_views(views(tmp_path / "ok", None), SETTINGS).shape) == (4, 2, 64, 32)
    for lie in ("RescaleSlope 1.2", "8-bit re-encode", "BitsStored 8 in RLE"):
        with pytest.raises(PreprocessError, match=LIES[lie][1]) as caught:
            load_views(views(tmp_path / lie.replace(" ", "_"), lie), SETTINGS)
        assert "L_CC_DES.dcm" in str(caught.value)


# ------------------------------------------------------------------- the size cap, before any decoding


def _packbits_constant_row(value: int, width: int) -> bytes:
    runs = []
    while width:
        n = min(128, width)
        runs.append(struct.pack("bB", 1 - n, value))
        width -= n
    return b"".join(runs)


def write_rle_frames(path: Path, frames: int = 40, rows: int = 4000, cols: int = 4000) -> Path:
    """The issue's file: a valid RLE Lossless MG DICOM of `frames` constant 16-bit frames, about 20 MB,
    that decodes to frames x rows x cols x 2 bytes (1.28 GB)."""
    write(path, np.zeros((8, 8), np.uint16))
    ds = pydicom.dcmread(path)
    segments = [_packbits_constant_row(value, cols) * rows for value in (0x07, 0xD0)]
    header = struct.pack("<16L", 2, 64, 64 + len(segments[0]), *([0] * 13))
    frame = header + b"".join(segments)
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.PixelData = encapsulate([frame] * frames)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.save_as(path, enforce_file_format=True)
    return path


def write_deflate_bomb(path: Path, frames: int = 32, rows: int = 4000, cols: int = 4000) -> Path:
    """The issue's file: about 1 MB, deflated, whose data set inflates to frames x rows x cols x 2 bytes
    of zero pixels (1 GiB). Built from byte-aligned deflate blocks, never holding the inflated data."""
    write(path, np.zeros((8, 8), np.uint16))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    length = frames * rows * cols * 2
    element = struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, length)

    def blocks(data: bytes) -> bytes:  # a fresh compressor each time: no reference to earlier data
        packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        return packer.compress(data) + packer.flush(zlib.Z_FULL_FLUSH)

    piece = 1 << 20
    zeros = blocks(b"\0" * piece)
    end = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # the final, empty block
    meta = DicomBytesIO()
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    with open(path, "wb") as out:
        out.write(b"\0" * 128 + b"DICM" + meta.getvalue())
        out.write(blocks(body.getvalue() + element))
        for _ in range(length // piece):
            out.write(zeros)
        out.write(blocks(b"\0" * (length % piece)) + end)
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    return {"rle": write_rle_frames(folder / "L_CC_LE_rle.dcm"),
            "deflate": write_deflate_bomb(folder / "L_CC_LE_deflate.dcm")}


def test_bombs_are_what_the_issue_describes(bombs):
    assert 19e6 < bombs["rle"].stat().st_size < 22e6
    ds = pydicom.dcmread(bombs["rle"], stop_before_pixels=True)
    assert (ds.NumberOfFrames, ds.Rows, ds.Columns, ds.BitsAllocated) == (40, 4000, 4000, 16)
    assert 0.9e6 < bombs["deflate"].stat().st_size < 1.2e6
    inflated = sizecap.deflated_length(bombs["deflate"], 1 << 31)
    assert 32 * 4000 * 4000 * 2 < inflated < 32 * 4000 * 4000 * 2 + 4096  # 1 GB, counted when allowed


def _peak_mb(action) -> tuple[float, object]:
    """Peak traced memory (MB) while `action` runs, and what it returned or the exception it raised."""
    tracemalloc.start()
    try:
        outcome = action()
    except Exception as exc:  # returned for the test to inspect
        outcome = exc
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return peak, outcome


def test_multi_frame_rle_is_refused_from_its_header(bombs, monkeypatch):
    def no_decoding(self):
        raise AssertionError("pixel data decoded")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoding))
    with pytest.raises(PreprocessError, match=r"40 frame\(s\) of 4000 x 4000 pixels x 1 sample\(s\) x 16 "
                                              r"bits takes 1,280 MB once decoded, above the cap of 100 MB"):
        read_pixels(bombs["rle"])
    monkeypatch.undo()
    peak, caught = _peak_mb(lambda: read_pixels(bombs["rle"]))
    assert isinstance(caught, PreprocessError) and peak < 64, peak  # was 2.1 GB, decoded before refusal
    with pytest.raises(ImageRejected, match="takes 1,280 MB once decoded") as caught:
        check_mg_header(bombs["rle"], "L", "CC", "LE")
    assert caught.value.kind == "too_large" and caught.value.reason.startswith("L_CC_LE_rle.dcm: ")


def test_deflate_bomb_is_refused_without_inflating_it(bombs):
    peak, caught = _peak_mb(lambda: read_pixels(bombs["deflate"]))
    assert isinstance(caught, PreprocessError) and peak < 32, peak
    assert f"{bombs['deflate']}: deflated data set inflates to more than 117 MB" in str(caught)
    peak, caught = _peak_mb(lambda: check_mg_header(bombs["deflate"], "L", "CC", "LE"))
    assert isinstance(caught, ImageRejected) and caught.kind == "too_large" and peak < 32, peak
    assert "deflated data set inflates to more than 117 MB" in caught.reason  # not "truncated"


def test_manifest_excludes_the_bombs_as_too_large(tmp_path: Path, bombs):
    root = write_ge_cohort(tmp_path / "ge", 3)
    (root / "SYN0001" / "L_CC_LE.dcm").write_bytes(bombs["deflate"].read_bytes())
    (root / "SYN0002" / "L_CC_LE.dcm").write_bytes(bombs["rle"].read_bytes())
    peak, built = _peak_mb(lambda: ge.scan(root, workers=1))
    assert peak < 64, peak  # was 2 GB for the deflated file
    rows = built.exclusions[built.exclusions.kind == "too_large"].set_index("patient_id")
    assert "deflated data set inflates to more than" in rows.loc["SYN0001", "reason"]
    assert "40 frame(s) of 4000 x 4000" in rows.loc["SYN0002", "reason"]
    assert set(built.breasts.patient_id) == {"SYN0003"}


def test_small_multi_frame_file_is_refused_before_decoding(tmp_path: Path, monkeypatch):
    path = write(tmp_path / "mf.dcm", np.full((4, 4), 2000, np.uint16))
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    ds.PixelData = np.full((2, 4, 4), 2000, np.uint16).tobytes()
    ds.save_as(path)
    def no_decoding(self):
        raise AssertionError("pixel data decoded")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoding))
    with pytest.raises(PreprocessError, match=r"mf\.dcm: pixel data holds 2 frames, not a 2-D grey image"):
        read_pixels(path)


def test_damaged_deflated_file_is_refused_naming_the_file(tmp_path: Path, phantom):
    path = write_deflated(tmp_path / "L_CC_LE.dcm", phantom["LE"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(PreprocessError, match=r"L_CC_LE\.dcm: not a readable DICOM file \(deflated data set "
                                              r"is truncated"):
        read_pixels(path)
    with pytest.raises(ImageRejected, match=r"L_CC_LE\.dcm is a damaged DICOM file \(deflated data set is "
                                            r"truncated") as caught:
        check_mg_header(path, "L", "CC", "LE")
    assert caught.value.kind == "unreadable"


# --------------------------------------------------------------- valid encodings read as pydicom reads them

ENCODINGS = {"deflated": write_deflated, "big-endian": write_big_endian, "float": write_float}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_valid_encodings_are_read_and_preprocessed_as_pydicom_decodes_them(tmp_path: Path, phantom,
                                                                          encoding: str):
    writer = ENCODINGS[encoding]
    native = {e: read_pixels(write(tmp_path / f"native_{e}.dcm", phantom[e], e)) for e in ("LE", "DES")}
    read = {}
    for energy in ("LE", "DES"):
        path = writer(tmp_path / f"L_CC_{energy}.dcm", phantom[energy], energy)
        assert check_mg_header(path, "L", "CC", energy) == phantom[energy].shape
        pixels, info = read_image(path, expected_range=SETTINGS.checked_range())
        reference = pydicom.dcmread(path).pixel_array  # pydicom's own decoding
        np.testing.assert_array_equal(pixels, reference.astype(np.float32))
        np.testing.assert_array_equal(pixels, native[energy])
        assert info.kind == "dicom" and not info.rescaled
        read[energy] = pixels
    for got, want in zip(preprocess_pair(read["LE"], read["DES"], "L", SETTINGS),
                         preprocess_pair(native["LE"], native["DES"], "L", SETTINGS), strict=True):
        np.testing.assert_array_equal(got, want)
