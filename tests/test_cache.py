"""Tests of the tensor cache: contents, keys, invalidation, corruption, resume, bad images and the CLI."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cemlib.data.cache as cache_module
from cemlib.cli import main as cem_main
from cemlib.core.fileio import sha256_file
from cemlib.data.cache import CacheError, TensorCache, apply_exclusions
from cemlib.data.freshness import SourceChangedError, changed_files
from cemlib.data.manifest import Manifest, assemble
from cemlib.data.tensorfile import decode_entry, encode_entry, quantise
from cemlib.pixels.imaging import exam_des_bounds, preprocess_mask, preprocess_pair, read_pixels
from cemlib.pixels.settings import PreprocessSettings
from tests.factories import write_mg_dicom

SIZE = (32, 16)
RAW_SHAPE = (96, 64)
STEP = 1.0 / 65535.0


def breast_pixels(side: str, seed: int, energy: str = "LE", shape: tuple[int, int] = RAW_SHAPE) -> np.ndarray:
    """A breast-like uint16 image: a textured ellipse on the chest-wall edge (left for L, right for R)."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    edge = 0 if side == "L" else cols - 1
    inside = ((xx - edge) / (0.75 * cols)) ** 2 + ((yy - rows / 2) / (0.42 * rows)) ** 2 <= 1.0
    base = 1700.0 if energy == "LE" else 1900.0
    texture = base + 1400.0 * rng.random(shape) ** 2
    image = np.where(inside, texture, 80.0 + 20.0 * rng.random(shape))
    return np.clip(image, 0, 16383).astype(np.uint16)


def write_exam(root: Path, patient_id: str, seed: int, energies=("LE", "DES"), mask_views=()) -> list[dict]:
    """Write one patient's DICOMs (and PNG masks for `mask_views`); return candidate image rows."""
    rows = []
    for side_index, side in enumerate("LR"):
        for view_index, view in enumerate(("CC", "MLO")):
            for energy in energies:
                rel = f"{patient_id}/{side}_{view}_{energy}.dcm"
                image_seed = seed * 100 + side_index * 10 + view_index * 2 + (energy == "DES")
                pixels = breast_pixels(side, image_seed, energy)
                write_mg_dicom(root / rel, pixels, ImageLaterality=side, ViewPosition=view)
                mask_rel = ""
                if (side, view) in mask_views:
                    mask_rel = f"masks/{patient_id}/{side}_{view}.png"
                    mask = np.zeros(RAW_SHAPE, dtype=np.uint8)
                    column = 8 if side == "L" else RAW_SHAPE[1] - 20
                    mask[40:52, column : column + 12] = 255
                    (root / mask_rel).parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask).save(root / mask_rel)
                rows.append({"patient_id": patient_id, "side": side, "view": view, "energy": energy,
                             "path": rel, "rows": RAW_SHAPE[0], "cols": RAW_SHAPE[1], "mask_path": mask_rel})
    return rows


def make_manifest(root: Path, patients: int = 3, energies=("LE", "DES"), labels=None, mask_views=(),
                  dataset: str = "test") -> Manifest:
    """A small manifest of synthetic DICOM exams, every patient in split 'train'."""
    images, breasts = [], []
    for i in range(patients):
        patient_id = f"P{i:03d}"
        images += write_exam(root, patient_id, seed=i + 1, energies=energies, mask_views=mask_views)
        label_l, label_r = labels[i] if labels else (i % 2, 0)
        breasts += [{"patient_id": patient_id, "side": "L", "label": label_l},
                    {"patient_id": patient_id, "side": "R", "label": label_r}]
    manifest = assemble(dataset, root, images, breasts, energies=energies, workers=1)
    manifest.breasts["split"] = "train"
    return manifest


@pytest.fixture
def exams(tmp_path: Path) -> Manifest:
    return make_manifest(tmp_path / "data", patients=3, mask_views=(("L", "CC"),))


def settings(**overrides) -> PreprocessSettings:
    return PreprocessSettings(size=SIZE, **overrides)


def test_get_matches_direct_preprocessing(exams: Manifest, tmp_path: Path) -> None:
    cache = TensorCache(tmp_path / "cache", settings())
    result = cache.fill(exams, workers=1, progress=False)
    assert result.stats == {"built": 12, "skipped": 0, "failed": 0, "total": 12}
    for row in exams.images[exams.images["energy"] == "LE"].itertuples():
        le_path = exams.root / row.path
        des_path = exams.root / row.path.replace("_LE.dcm", "_DES.dcm")
        le, des = read_pixels(le_path), read_pixels(des_path)
        le01, des01 = preprocess_pair(le, des, row.side, settings(), source=str(le_path))
        got = cache.get(row.patient_id, row.side, row.view).numpy()
        assert got.dtype == np.float32
        assert got[0].shape == SIZE
        np.testing.assert_allclose(got[0], le01, atol=STEP / 2 + 1e-7)
        np.testing.assert_allclose(got[1], des01, atol=STEP / 2 + 1e-7)
        if row.mask_path:
            assert got.shape == (3, *SIZE)
            mask = np.asarray(Image.open(exams.root / row.mask_path)) > 0
            expected_mask = preprocess_mask(mask, le, row.side, settings())
            np.testing.assert_allclose(got[2], expected_mask, atol=STEP / 2 + 1e-7)
            assert got[2].max() > 0.5
        else:
            assert got.shape == (2, *SIZE)


def test_second_fill_builds_nothing(exams: Manifest, tmp_path: Path) -> None:
    cache = TensorCache(tmp_path / "cache", settings())
    cache.fill(exams, progress=False)
    again = TensorCache(tmp_path / "cache", settings()).fill(exams, progress=False)
    assert again.stats == {"built": 0, "skipped": 12, "failed": 0, "total": 12}


def test_setting_change_rebuilds_everything_under_new_keys(exams: Manifest, tmp_path: Path) -> None:
    first = TensorCache(tmp_path / "cache", settings())
    first.fill(exams, progress=False)
    other = TensorCache(tmp_path / "cache", PreprocessSettings(size=(24, 12)))
    result = other.fill(exams, progress=False)
    assert result.built == 12 and result.skipped == 0
    old_keys = {e.key for e in first.attach(exams)}
    new_keys = {e.key for e in other.attach(exams)}
    assert old_keys.isdisjoint(new_keys)
    assert other.get("P000", "L", "CC").shape[-2:] == (24, 12)
    assert first.get("P000", "L", "CC").shape[-2:] == SIZE  # the old entries stay valid


def test_changed_source_file_rebuilds_only_its_entry(exams: Manifest, tmp_path: Path) -> None:
    cache = TensorCache(tmp_path / "cache", settings())
    cache.fill(exams, progress=False)
    before = cache.get("P001", "R", "MLO").clone()
    untouched = cache.get("P001", "R", "CC").clone()
    target = exams.root / "P001/R_MLO_DES.dcm"
    new_pixels = breast_pixels("R", seed=999, energy="DES")
    write_mg_dicom(target, new_pixels, ImageLaterality="R", ViewPosition="MLO")
    exams.images.loc[exams.images["path"] == "P001/R_MLO_DES.dcm", "sha256"] = sha256_file(target)
    result = cache.fill(exams, progress=False)
    assert (result.built, result.skipped) == (1, 11)
    after = cache.get("P001", "R", "MLO")
    assert not np.allclose(after[1].numpy(), before[1].numpy())
    np.testing.assert_array_equal(cache.get("P001", "R", "CC").numpy(), untouched.numpy())


def test_truncated_entry_is_never_served_and_fill_rebuilds_it(exams: Manifest, tmp_path: Path) -> None:
    cache = TensorCache(tmp_path / "cache", settings())
    cache.fill(exams, progress=False)
    entry = cache.entry("P002", "L", "MLO")
    path = cache.path_for(entry)
    good = cache.get("P002", "L", "MLO").clone()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError, match=str(path.name)):
        cache.get("P002", "L", "MLO")
    result = cache.fill(exams, progress=False)
    assert (result.built, result.skipped) == (1, 11)
    np.testing.assert_array_equal(cache.get("P002", "L", "MLO").numpy(), good.numpy())


def test_corrupt_bytes_are_detected(exams: Manifest, tmp_path: Path) -> None:
    cache = TensorCache(tmp_path / "cache", settings())
    cache.fill(exams, progress=False)
    path = cache.path_for(cache.entry("P000", "R", "CC"))
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF  # inside the pixel payload: same size, same header
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="checksum"):
        cache.get("P000", "R", "CC")
    header_broken = bytearray(data)
    header_broken[40:45] = b"(9, 9"
    path.write_bytes(bytes(header_broken))
    with pytest.raises(CacheError, match="header"):
        cache.get("P000", "R", "CC")


def test_entry_format_round_trip_and_numpy_compatibility(tmp_path: Path) -> None:
    stack = np.random.default_rng(0).random((2, 5, 3)).astype(np.float32)
    stack[0, 0, 0], stack[1, 0, 0] = 0.0, 1.0
    data = encode_entry(stack)
    restored = decode_entry(data, (2, 5, 3), tmp_path / "x.npy")
    np.testing.assert_array_equal(restored, np.rint(stack * 65535).astype(np.uint16))
    assert np.abs(restored / 65535.0 - stack).max() <= STEP / 2 + 1e-9
    (tmp_path / "x.npy").write_bytes(data)  # still a plain .npy file for numpy
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy", mmap_mode="r"), restored)
    assert quantise(np.array([-1.0, np.nan, 2.0])).tolist() == [0, 0, 65535]


def test_interrupted_fill_resumes_cleanly(exams: Manifest, tmp_path: Path, monkeypatch) -> None:
    cache = TensorCache(tmp_path / "cache", settings())
    real_build = cache_module.build_stack
    calls = {"n": 0}

    def build_then_die(entry, settings_, record=None):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during entry 6
        return real_build(entry, settings_, record)

    monkeypatch.setattr(cache_module, "build_stack", build_then_die)
    with pytest.raises(KeyboardInterrupt):
        cache.fill(exams, progress=False)
    monkeypatch.setattr(cache_module, "build_stack", real_build)
    # leftovers a killed process can leave: a temporary file and a half-written final file
    entries = cache.attach(exams)
    stray = cache.path_for(entries[-1]).parent / f".{entries[-1].key}.npy.abcd.tmp"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"\x93NUMPY partial")
    half = cache.path_for(entries[-2])
    half.parent.mkdir(parents=True, exist_ok=True)
    half.write_bytes(encode_entry(np.zeros((2, *SIZE), np.float32))[:100])
    result = cache.fill(exams, progress=False)
    assert (result.built, result.skipped, result.failed) == (7, 5, 0)
    assert not list(cache.folder.glob("*/.*.tmp"))
    for entry in entries:
        cache.read(entry)  # every entry verifies


def test_bad_image_becomes_an_exclusion_with_its_reason(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "data", patients=3)
    bad = manifest.root / "P001/L_MLO_LE.dcm"
    write_mg_dicom(bad, np.full(RAW_SHAPE, 90, dtype=np.uint16), ImageLaterality="L", ViewPosition="MLO")
    manifest.images.loc[manifest.images["path"] == "P001/L_MLO_LE.dcm", "sha256"] = sha256_file(bad)
    cache = TensorCache(tmp_path / "cache", settings())
    result = cache.fill(manifest, progress=False)
    assert (result.built, result.failed) == (11, 1)
    row = result.exclusions.iloc[0]
    assert (row["patient_id"], row["side"], row["path"]) == ("P001", "L", "P001/L_MLO_LE.dcm")
    assert row["reason"].startswith("preprocessing failed (L MLO): ") and len(row["reason"]) > 35
    with pytest.raises(CacheError, match="failed preprocessing"):
        cache.get("P001", "L", "MLO")
    # remembered: the next fill does not retry it, and still reports it
    again = cache.fill(manifest, progress=False)
    assert (again.built, again.skipped, again.failed) == (0, 11, 1)
    assert again.exclusions["reason"].tolist() == result.exclusions["reason"].tolist()
    pd.testing.assert_frame_equal(cache.failures(manifest), result.exclusions)
    dropped = apply_exclusions(manifest, result.exclusions)
    assert dropped == ["P001"]
    assert "P001" in manifest.excluded_patients() and "P001" not in set(manifest.images["patient_id"])


def test_unreadable_file_is_excluded_not_a_crash(exams: Manifest, tmp_path: Path) -> None:
    broken = exams.root / "P002/R_CC_LE.dcm"
    broken.write_bytes(b"not a dicom file at all")
    exams.images.loc[exams.images["path"] == "P002/R_CC_LE.dcm", "sha256"] = sha256_file(broken)
    result = TensorCache(tmp_path / "cache", settings()).fill(exams, progress=False)
    assert result.failed == 1
    assert result.exclusions.iloc[0]["patient_id"] == "P002"


def test_parallel_fill_equals_serial_fill(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "data", patients=2)
    serial = TensorCache(tmp_path / "serial", settings())
    parallel = TensorCache(tmp_path / "parallel", settings())
    serial.fill(manifest, workers=1, progress=False)
    result = parallel.fill(manifest, workers=2, progress=False)
    assert result.built == 8
    for entry in serial.attach(manifest):
        assert serial.path_for(entry).read_bytes() == parallel.path_for(entry).read_bytes()


def test_cli_preprocess_second_run_does_no_work(exams: Manifest, tmp_path: Path, capsys) -> None:
    exams.save(tmp_path / "manifest")
    argv = ["preprocess", "--manifest", str(tmp_path / "manifest"), "--cache", str(tmp_path / "cache"),
            "--set", "preprocess.size=[32,16]", "--set", "preprocess.window=adaptive", "--workers", "1",
            "--no-progress"]
    assert cem_main(argv) == 0
    assert "built 12, skipped 0, failed 0" in capsys.readouterr().out
    assert cem_main(argv) == 0
    assert "built 0, skipped 12, failed 0" in capsys.readouterr().out
    assert cem_main(["preprocess", "--manifest", str(tmp_path / "nowhere"), "--cache", str(tmp_path)]) == 1
    assert "manifest" in capsys.readouterr().err


def test_cache_from_profile_uses_its_folder_and_settings() -> None:
    from cemlib.core.settings import load_profile

    profile = load_profile("smoke")
    cache = TensorCache.from_profile(profile)
    assert cache.cache_dir == Path(profile["preprocess"]["cache"])
    assert cache.settings == PreprocessSettings.from_profile(profile)
    assert cache.settings.size == tuple(profile["preprocess"]["size"])


def _children(pid: int) -> list[int]:
    """Pids of the live processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_kill_9_of_preprocess_leaves_no_worker_alive(tmp_path: Path) -> None:
    """`cem preprocess --workers 2` killed with SIGKILL mid-run: both pool workers exit with it."""
    # one exam of large images, shared (through symbolic links) by 40 patients: about ten seconds of work
    root = tmp_path / "data"
    big = (1800, 1200)
    images, breasts = [], []
    for side in "LR":
        for view in ("CC", "MLO"):
            for energy in ("LE", "DES"):
                name = f"{side}_{view}_{energy}.dcm"
                write_mg_dicom(root / "source" / name, breast_pixels(side, 7, energy, big),
                               ImageLaterality=side, ViewPosition=view)
    digests = {p.name: sha256_file(p) for p in (root / "source").iterdir()}
    stats = {p.name: p.stat() for p in (root / "source").iterdir()}
    for i in range(40):
        folder = root / f"P{i:03d}"
        folder.mkdir()
        for name, digest in digests.items():
            (folder / name).symlink_to(root / "source" / name)
            side, view, energy = name[:-4].split("_")
            images.append({"dataset": "test", "patient_id": folder.name, "side": side, "view": view,
                           "energy": energy, "path": f"{folder.name}/{name}", "sha256": digest,
                           "rows": big[0], "cols": big[1], "mask_path": "", "size": stats[name].st_size,
                           "mtime_ns": stats[name].st_mtime_ns})
        breasts += [{"dataset": "test", "patient_id": folder.name, "side": s, "label": 0, "birads": "",
                     "pathology": "", "age": np.nan, "density": "", "split": "train"} for s in "LR"]
    manifest = Manifest("test", root.resolve(), pd.DataFrame(images), pd.DataFrame(breasts),
                        pd.DataFrame(columns=["dataset", "patient_id", "side", "path", "reason", "kind"]))
    manifest.save(tmp_path / "manifest")

    command = [sys.executable, "-m", "cemlib.cli", "preprocess", "--manifest", str(tmp_path / "manifest"),
               "--cache", str(tmp_path / "cache"), "--set", "preprocess.size=[256,128]", "--workers", "2",
               "--no-progress"]

    def running_workers(parent_pid: int) -> list[int]:
        workers = [pid for pid in _children(parent_pid)
                   if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
        # both workers run and have finished at least one entry
        return workers if len(workers) == 2 and any((tmp_path / "cache").glob("*/*/*.npy")) else []

    kill_parent_and_check_workers(command, running_workers)


def kill_parent_and_check_workers(command: list[str], running_workers) -> None:
    """Start `command`, wait until `running_workers(pid)` names its busy workers, SIGKILL it, and assert
    that every one of those workers exits within 20 s."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline and parent.poll() is None and not workers:
            workers = running_workers(parent.pid)
            time.sleep(0.2)
        assert parent.poll() is None and workers, f"{command[3]} ended before it could be killed"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.2)
        survivors = [pid for pid in workers if _alive(pid)]
        assert not survivors, f"worker processes {survivors} outlived their killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_fill_records_each_window_and_its_rule(exams: Manifest, tmp_path: Path) -> None:
    cache = TensorCache(tmp_path / "cache", settings())
    cache.fill(exams, progress=False)
    windows = cache.windows()
    assert len(windows) == 12 and set(windows["key"]) == {e.key for e in cache.attach(exams)}
    row = windows[(windows["patient_id"] == "P000") & (windows["side"] == "L") & (windows["view"] == "CC")]
    le = read_pixels(exams.root / "P000/L_CC_LE.dcm")
    record: dict = {}
    preprocess_pair(le, read_pixels(exams.root / "P000/L_CC_DES.dcm"), "L", settings(), record=record)
    assert (float(row["le_low"].iloc[0]), float(row["le_high"].iloc[0])) == record["le_window"]
    assert row["le_window_rule"].iloc[0] == record["le_window_rule"] == "adaptive raw 1500..3300"
    assert row["des_window_rule"].iloc[0] == record["des_window_rule"]


def test_source_changed_after_the_manifest_stops_preprocess_naming_the_file(exams: Manifest, tmp_path: Path,
                                                                            capsys) -> None:
    """The reproduction: a source image rewritten after `cem preprocess` filled the cache. Before, the
    next `cem preprocess` said "built 0, skipped 12" and every reader got the old tensor."""
    exams.save(tmp_path / "manifest")
    argv = ["preprocess", "--manifest", str(tmp_path / "manifest"), "--cache", str(tmp_path / "cache"),
            "--set", "preprocess.size=[32,16]", "--workers", "1", "--no-progress"]
    assert cem_main(argv) == 0
    assert "built 12, skipped 0" in capsys.readouterr().out
    target = exams.root / "P001/R_MLO_LE.dcm"
    write_mg_dicom(target, breast_pixels("R", seed=999), ImageLaterality="R", ViewPosition="MLO")
    assert cem_main(argv) == 1
    err = capsys.readouterr().err
    assert "test/P001 R MLO LE (changed)" in err and "cem manifest" in err and err.count("\n") == 1
    manifest = Manifest.load(tmp_path / "manifest")
    cache = TensorCache(tmp_path / "cache", settings())
    with pytest.raises(SourceChangedError, match="P001 R MLO LE"):
        cache.attach(manifest)  # training and prediction attach before they read a tensor
    # a fresh cache filled from the changed file does not store it under the old file's key
    fresh = TensorCache(tmp_path / "fresh", settings())
    with pytest.raises(SourceChangedError):
        fresh.fill(manifest, progress=False)
    assert not list(fresh.folder.glob("*/*.npy"))


def test_touched_but_identical_file_is_accepted(exams: Manifest, tmp_path: Path) -> None:
    import os

    cache = TensorCache(tmp_path / "cache", settings())
    cache.fill(exams, progress=False)
    target = exams.root / "P000/L_CC_DES.dcm"
    os.utime(target, ns=(1, 1))  # mtime differs: the file is hashed again and found identical
    assert len(cache.attach(exams)) == 12
    assert changed_files(exams).empty


def test_file_changing_while_preprocessed_is_never_stored(exams: Manifest, tmp_path: Path,
                                                          monkeypatch) -> None:
    cache = TensorCache(tmp_path / "cache", settings())
    real_build = cache_module.build_stack

    def build_then_change(entry, settings_, record=None):
        stack = real_build(entry, settings_, record)
        if entry.patient_id == "P002" and entry.view == "CC" and entry.side == "L":
            write_mg_dicom(entry.le_path, breast_pixels("L", seed=555), ImageLaterality="L")
        return stack

    monkeypatch.setattr(cache_module, "build_stack", build_then_change)
    with pytest.raises(SourceChangedError, match="test/P002 L CC LE changed while"):
        cache.fill(exams, progress=False)
    entry = next(e for e in cache.plan(exams)[0] if (e.patient_id, e.side, e.view) == ("P002", "L", "CC"))
    assert not cache.path_for(entry).exists()


def test_an_exam_wide_des_window_is_cached_per_exam_and_rebuilt_when_any_des_view_changes(tmp_path: Path):
    """Under des_window "exam" every view's DES is windowed with the window of the exam's pooled DES
    views, as preprocess_pair gives it; another DES file of the exam changes every view's key."""
    manifest = make_manifest(tmp_path / "data", patients=2)
    cache = TensorCache(tmp_path / "cache", settings(des_window="exam"))
    assert cache.fill(manifest, workers=1, progress=False).failed == 0
    rows = manifest.images[manifest.images["patient_id"] == "P000"]
    des_rows = rows[rows["energy"] == "DES"]
    des_paths = {(r["side"], r["view"]): manifest.image_path(r) for _, r in des_rows.iterrows()}
    le_path = manifest.image_path(rows[(rows["side"] == "L") & (rows["view"] == "CC") &
                                       (rows["energy"] == "LE")].iloc[0])
    bounds = exam_des_bounds([read_pixels(p) for p in des_paths.values()], cache.settings)
    _, des01 = preprocess_pair(read_pixels(le_path), read_pixels(des_paths[("L", "CC")]), "L", cache.settings,
                               des_bounds=bounds)
    assert np.allclose(cache.get_array("P000", "L", "CC")[1], des01, atol=1 / 65535)
    keys = {(e.patient_id, e.side, e.view): e.key for e in cache.plan(manifest)[0]}
    changed = manifest.images.copy()
    changed.loc[(changed["patient_id"] == "P000") & (changed["side"] == "R") & (changed["view"] == "MLO")
                & (changed["energy"] == "DES"), "sha256"] = "0" * 64
    again = {(e.patient_id, e.side, e.view): e.key
             for e in cache.plan(dataclasses.replace(manifest, images=changed))[0]}
    assert all(again[k] != keys[k] for k in keys if k[0] == "P000")
    assert all(again[k] == keys[k] for k in keys if k[0] == "P001")


def test_a_remembered_plan_follows_the_images_table_and_is_not_shared(exams: Manifest, tmp_path: Path):
    cache = TensorCache(tmp_path / "cache", settings())
    entries, _ = cache.plan(exams)
    entries.clear()  # a caller changing its copy changes nothing remembered
    again, _ = TensorCache(tmp_path / "cache", settings()).plan(exams)
    assert len(again) == len(exams.images[exams.images.energy == "LE"])
    edited = exams.images.copy()
    edited.loc[0, "sha256"] = "0" * 64  # another file under the same path: another key
    other = Manifest(exams.dataset, exams.root, edited, exams.breasts, exams.exclusions)
    changed = {e.key for e in cache.plan(other)[0]} - {e.key for e in again}
    assert len(changed) == 1
