"""Nothing stored twice, no view mislabelled, no source changed unseen: each case on a fixture that
reproduces it, built from the synthetic phantom (cemlib.data.integrity, cemlib.pixels.geometry,
cemlib.data.freshness).

The reproductions: the same 8 image files under a malignant training patient and a normal validation
patient were both kept; a duplicated SOPInstanceUID went unnoticed; a CC image retagged as MLO was scored
as an MLO view; a source rewritten with its size and mtime kept was served from the old cached tensor.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import generate_uid

from cemlib import cli, synthetic
from cemlib.data import integrity, sources
from cemlib.data.cache import TensorCache
from cemlib.data.freshness import SourceChangedError, changed_files, verify
from cemlib.data.manifest import Manifest
from cemlib.data.sources import ge
from cemlib.pixels import geometry
from cemlib.pixels.imaging import read_pixels
from cemlib.pixels.settings import PreprocessSettings


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    """Four phantom patients in the GE layout (small images: 92 x 72 pixels)."""
    return synthetic.write_cohort(tmp_path_factory.mktemp("phantom") / "cohort", patients=4, seed=11,
                                  scale=0.03, workers=1)


@pytest.fixture
def cohort(phantom: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(phantom, tmp_path / "cohort"))


def labels_of(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)


def rewrite(source: Path, target: Path, nudge: bool = False, **tags) -> Path:
    """`source` written to `target` with `tags` changed and a new SOPInstanceUID (a re-export); `nudge`
    adds 1 to every pixel, so the pixel data is no longer byte-identical."""
    ds = pydicom.dcmread(source)
    for key, value in tags.items():
        setattr(ds, key, value)
    if "SOPInstanceUID" not in tags:
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if nudge:
        ds.PixelData = (ds.pixel_array.astype(np.uint16) + 1).astype("<u2").tobytes()
    ds.save_as(target)
    return target


def retag_view(source: Path, target: Path, view: str, nudge: bool = False) -> Path:
    """A low-energy image stored as `target`, tagged `view` (the reproduction of a mislabelled view)."""
    side = source.name[0]
    return rewrite(source, target, nudge, ViewPosition=view, SeriesDescription=f"LOW_ENERGY {side} {view}")


def scan(root: Path, **options) -> Manifest:
    return sources.build(root, "ge", seed=0, workers=1, **options)[0]


def excluded(manifest: Manifest, patient: str) -> pd.DataFrame:
    assert patient not in set(manifest.breasts.patient_id) | set(manifest.images.patient_id)
    return manifest.exclusions[manifest.exclusions.patient_id == patient]


# ------------------------------------------------------------------------------------------ duplicates

def test_the_same_exam_under_two_patients_excludes_both_naming_each_other(cohort: Path):
    labels = labels_of(cohort)
    malignant = labels.groupby("patient_id")["label"].apply(lambda s: "1" in set(s))
    source = malignant[malignant].index[0]
    # the reproduction: the malignant exam's 8 files copied under a normal patient in a name-like folder
    shutil.copytree(cohort / source, cohort / "Jane_Doe_1970")
    copy = labels[labels.patient_id == source].assign(patient_id="Jane_Doe_1970", label="0")
    pd.concat([labels, copy]).to_csv(cohort / "labels.csv", index=False)
    manifest = scan(cohort)
    alias = ge.pseudonym("Jane_Doe_1970")
    for patient, other in ((source, alias), (alias, source)):
        rows = excluded(manifest, patient)
        assert set(rows.kind) == {"duplicate_image", "duplicate_uid"}
        for reason in rows.reason:
            assert other in reason and "8 image(s)" in reason and "which patient and label" in reason
            assert "Jane" not in reason and "Doe" not in reason
    assert len(manifest.patients) == 4 - 1  # the others stay
    assert manifest.exclusions.kind.value_counts().to_dict() == {"duplicate_image": 2, "duplicate_uid": 2}


def test_a_duplicated_sop_instance_uid_excludes_both_patients(cohort: Path):
    uid = pydicom.dcmread(cohort / "SYN0003" / "L_MLO_LE.dcm").SOPInstanceUID
    target = cohort / "SYN0002" / "R_CC_DES.dcm"
    rewrite(target, target, SOPInstanceUID=uid)
    manifest = scan(cohort)
    for patient, other, view in (("SYN0002", "SYN0003", "R CC DES"), ("SYN0003", "SYN0002", "L MLO LE")):
        (reason,) = excluded(manifest, patient).query("kind == 'duplicate_uid'").reason
        assert f"{patient} {view}" in reason and other in reason and "SOPInstanceUID" in reason
    assert set(manifest.exclusions.kind) == {"duplicate_uid"}  # the pixels differ
    assert manifest.patients == ["SYN0001", "SYN0004"]


def test_one_image_stored_as_two_views_of_an_exam_excludes_it(cohort: Path):
    rewrite(cohort / "SYN0004" / "L_CC_LE.dcm", cohort / "SYN0004" / "R_CC_LE.dcm", ImageLaterality="R",
            SeriesDescription="LOW_ENERGY R CC")
    manifest = scan(cohort)
    (reason,) = excluded(manifest, "SYN0004").query("kind == 'duplicate_image'").reason
    assert "SYN0004 L CC LE = SYN0004 R CC LE" in reason and "two views of this exam" in reason
    assert manifest.patients == ["SYN0001", "SYN0002", "SYN0003"]


def test_duplicate_problems_ignore_one_file_listed_twice():
    item = {"patient_id": "A", "side": "L", "view": "CC", "energy": "LE", "path": "a", "content": "x",
            "sop_uid": "1"}
    assert integrity.duplicate_problems([item, dict(item)]) == []
    assert integrity.duplicate_problems([item, {**item, "path": "b"}]) == []  # a duplicate_view already


# --------------------------------------------------------------------------------------------- geometry

def test_the_pectoral_corner_tells_cc_from_mlo_on_the_phantom(phantom: Path):
    for patient in ("SYN0001", "SYN0002", "SYN0003", "SYN0004"):
        for side in "LR":
            cc = geometry.pectoral_score(read_pixels(phantom / patient / f"{side}_CC_LE.dcm"))
            mlo = geometry.pectoral_score(read_pixels(phantom / patient / f"{side}_MLO_LE.dcm"))
            assert cc is not None and mlo is not None
            assert cc <= geometry.CC_AT_MOST - 0.2 and mlo >= geometry.MLO_AT_LEAST + 0.05, (patient, side)


def test_images_that_cannot_be_judged_get_no_score(phantom: Path):
    cc = read_pixels(phantom / "SYN0001" / "L_CC_LE.dcm")
    assert geometry.pectoral_score(cc.max() - cc) is None  # inverted (a lying MONOCHROME1): smooth "breast"
    assert geometry.pectoral_score(np.zeros((200, 160))) is None  # flat
    assert geometry.pectoral_score(np.random.default_rng(0).random((12, 8))) is None  # too small
    framed = np.zeros((200, 160))
    framed[20:180, :] = 1.0  # tissue on both edges (a crop): no chest wall to find
    assert geometry.pectoral_score(framed) is None


def test_an_mlo_without_muscle_is_judged_only_where_the_exam_shows_one():
    low = {("L", "CC"): 0.0, ("L", "MLO"): 0.1, ("R", "CC"): 0.05, ("R", "MLO"): 0.02}
    assert geometry.view_contradictions(low) == []  # e.g. images with no muscle drawn at all
    one = {**low, ("R", "MLO"): 1.3}
    ((side, view, reason),) = geometry.view_contradictions(one)
    assert (side, view) == ("L", "MLO") and "R MLO LE of this exam shows one" in reason
    assert "L CC LE scores 0.00" in reason


def test_a_cc_image_retagged_as_mlo_excludes_its_exam_naming_both_views(cohort: Path):
    folder = cohort / "SYN0002"  # not byte-identical below: the view check alone
    retag_view(folder / "L_CC_LE.dcm", folder / "L_MLO_LE.dcm", "MLO", nudge=True)
    manifest = scan(cohort)
    ((kind, side, reason),) = excluded(manifest, "SYN0002")[["kind", "side", "reason"]].values
    assert (kind, side) == ("view_mismatch", "L")
    assert "L MLO LE is tagged MLO but shows no pectoral muscle" in reason
    assert "R MLO LE of this exam shows one" in reason and "L CC LE scores" in reason
    assert manifest.patients == ["SYN0001", "SYN0003", "SYN0004"]
    kept = scan(cohort, check_views=False)  # the user's way out, for images the check misjudges
    assert "SYN0002" in kept.patients


def test_the_same_cc_file_retagged_as_mlo_is_caught_twice(cohort: Path):
    retag_view(cohort / "SYN0001" / "R_CC_LE.dcm", cohort / "SYN0001" / "R_MLO_LE.dcm", "MLO")
    rows = excluded(scan(cohort), "SYN0001")
    assert set(rows.kind) == {"view_mismatch", "duplicate_image"}


def test_swapped_cc_and_mlo_images_exclude_the_exam_naming_both(cohort: Path, tmp_path: Path):
    folder, spare = cohort / "SYN0003", tmp_path / "spare"
    shutil.copytree(folder, spare)
    retag_view(spare / "L_CC_LE.dcm", folder / "L_MLO_LE.dcm", "MLO")
    retag_view(spare / "L_MLO_LE.dcm", folder / "L_CC_LE.dcm", "CC")
    rows = excluded(scan(cohort), "SYN0003")
    assert rows.kind.tolist() == ["view_mismatch", "view_mismatch"]
    reasons = " | ".join(rows.reason)
    assert "L CC LE is tagged CC but shows a pectoral muscle" in reasons
    assert "L MLO LE is tagged MLO but shows no pectoral muscle" in reasons


@pytest.mark.slow
def test_no_synthetic_exam_is_excluded_by_the_new_checks(tmp_path: Path):
    """The calibration: a 60-patient cohort at the smoke scale and both replicas lose nobody to them."""
    from cemlib.synthetic import cddcesm, inbreast

    roots = {"ge": synthetic.write_cohort(tmp_path / "ge", patients=60, seed=0, scale=0.08, workers=1),
             "inbreast": inbreast.write_replica(tmp_path / "inb", patients=30, seed=1, workers=1),
             "cddcesm": cddcesm.write_replica(tmp_path / "cdd", patients=40, seed=2, workers=1)}
    for layout, root in roots.items():
        manifest = sources.build(root, layout, workers=1)[0]
        new = {"duplicate_image", "duplicate_uid", "view_mismatch"} & set(manifest.exclusions.kind)
        assert not new, (layout, manifest.exclusions[manifest.exclusions.kind.isin(new)].reason.tolist())
        off = sources.build(root, layout, workers=1, check_views=False)[0]
        pd.testing.assert_frame_equal(manifest.breasts, off.breasts)


# ------------------------------------------------------------------------------------ the content check

def rewrite_keeping_size_and_mtime(path: Path, offset: int = -200) -> None:
    """Change one byte of a file and give it back its size and mtime (a copy with -p, a restore)."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_a_source_changed_with_size_and_mtime_kept_is_caught_before_its_tensor_is_used(
        cohort: Path, tmp_path: Path, capsys):
    manifest = scan(cohort)
    manifest.save(tmp_path / "manifest")
    cache = TensorCache(tmp_path / "cache", PreprocessSettings(size=(32, 16)))
    assert cache.fill(manifest, workers=1, progress=False).failed == 0
    target = cohort / "SYN0002" / "L_MLO_DES.dcm"
    rewrite_keeping_size_and_mtime(target)  # a pixel near the end of the image
    loaded = Manifest.load(tmp_path / "manifest")
    changed = changed_files(loaded)
    assert changed[["path", "status"]].values.tolist() == [["SYN0002/L_MLO_DES.dcm", "changed"]]
    with pytest.raises(SourceChangedError, match="SYN0002 L MLO DES"):
        TensorCache(tmp_path / "cache", PreprocessSettings(size=(32, 16))).attach(loaded)
    capsys.readouterr()
    assert cli.main(["manifest", "--verify", str(tmp_path / "manifest")]) == 1
    assert "changed: synthetic/SYN0002 L MLO DES" in capsys.readouterr().out


def test_the_sampled_digest_reads_the_header_and_blocks_and_misses_what_lies_between(tmp_path: Path):
    path = tmp_path / "big.dcm"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4_000_000, dtype=np.uint8).tobytes())
    spans = integrity.sample_spans(4_000_000)
    assert sum(length for _, length in spans) == 2 * integrity.EDGE_BYTES + 32 * integrity.BLOCK_BYTES
    before = integrity.sampled_digest(path)
    assert before == integrity.sampled_digest_of(path.read_bytes())
    rewrite_keeping_size_and_mtime(path, 1000)  # the header: a retag, another file in its place
    assert integrity.sampled_digest(path) != before
    between = spans[1][0] + integrity.BLOCK_BYTES + 10  # a byte no sampled block covers
    restored = integrity.sampled_digest(path)
    rewrite_keeping_size_and_mtime(path, between)
    assert integrity.sampled_digest(path) == restored  # the documented limit: only --verify sees this
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1000)
    assert integrity.sample_spans(1000) == [(0, 1000)]  # small files are hashed whole


def test_a_manifest_without_sampled_digests_keeps_the_stat_check(cohort: Path, tmp_path: Path):
    scan(cohort).save(tmp_path / "manifest")
    images = pd.read_csv(tmp_path / "manifest" / "images.csv", dtype=str, keep_default_na=False)
    images.drop(columns=["sampled_digest"]).to_csv(tmp_path / "manifest" / "images.csv", index=False)
    old = Manifest.load(tmp_path / "manifest")
    assert set(old.images.sampled_digest) == {""}
    assert changed_files(old).empty and verify(old).empty
    (cohort / "SYN0001" / "R_CC_LE.dcm").unlink()
    assert changed_files(old).status.tolist() == ["missing"]
