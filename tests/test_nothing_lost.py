"""Nothing lost, nothing passed that is broken: a settings typo keeps the manifest whole, broken predictions
are refused, a second writer of a run folder or manifest is refused, a report comes only from notebooks
that finished, and bad settings or label cells fail in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cemlib import cli
from cemlib.core.fileio import sha256_file
from cemlib.data.cache import TensorCache
from cemlib.data.datasets import PatientDataset
from cemlib.data.manifest import Manifest
from cemlib.pixels.imaging import PreprocessSettings
from tests.test_cache import make_manifest

MANIFEST_FILES = ("images.csv", "breasts.csv", "exclusions.csv", "manifest.json")


def one_line_error(capsys, verb: str) -> str:
    """stderr of a failed verb, progress bars aside: exactly one line, `cem VERB: error: ...`; returned."""
    lines = [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if line.strip()]
    shown = [line for line in lines if not re.match(r"^\w[\w ]*:\s+\d+%\|", line)]
    assert len(shown) == 1, lines
    assert shown[0].startswith(f"cem {verb}: error: "), shown
    return shown[0]


def digests(folder: Path) -> dict[str, str]:
    """sha256 of each manifest file: the proof that nothing rewrote it."""
    return {name: sha256_file(folder / name) for name in MANIFEST_FILES}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """Three synthetic exams saved as a manifest folder."""
    return make_manifest(tmp_path / "data", patients=3).save(tmp_path / "manifest")


def preprocess(saved: Path, cache: Path, *size: int) -> list[str]:
    return ["preprocess", "--manifest", str(saved), "--cache", str(cache), "--size", *map(str, size),
            "--workers", "0", "--no-progress"]


# ---------------------------------------------------------------------------------------- 1 settings typo

def test_a_size_typo_is_refused_naming_the_setting_and_the_manifest_stays_whole(saved, tmp_path, capsys):
    before = digests(saved)
    assert cli.main(preprocess(saved, tmp_path / "cache", 2048, 1024)) == 1
    err = one_line_error(capsys, "preprocess")
    assert "preprocess.size=[2048, 1024]" in err and "all 12 image view(s)" in err
    assert digests(saved) == before
    assert not list((tmp_path / "cache").rglob("*.failed.json"))  # nothing remembered from that run
    assert cli.main(preprocess(saved, tmp_path / "cache", 64, 32)) == 0  # the fixed setting recovers
    assert "built 12, skipped 0, failed 0" in capsys.readouterr().out
    assert digests(saved) == before and len(Manifest.load(saved).breasts) == 6


def test_failures_stay_with_the_cache_and_the_datasets_apply_them(saved, tmp_path, capsys):
    manifest = Manifest.load(saved)
    bad = manifest.root / "P001/L_MLO_LE.dcm"
    bad.write_bytes(b"not a dicom")  # the manifest's sha256 is updated: the file itself is the problem
    manifest.images.loc[manifest.images["path"] == "P001/L_MLO_LE.dcm", ["sha256", "size", "mtime_ns"]] = \
        [sha256_file(bad), -1, -1]
    manifest.save(saved)
    before = digests(saved)
    assert cli.main(preprocess(saved, tmp_path / "cache", 64, 32)) == 0
    assert "excluded test/P001" in capsys.readouterr().out
    assert digests(saved) == before  # the failure is the cache's, not the manifest's
    cache = TensorCache(tmp_path / "cache", PreprocessSettings(size=(64, 32)))
    assert PatientDataset(Manifest.load(saved), cache, inputs="le").patients == ["P000", "P002"]


def test_fill_cache_of_the_study_never_saves_the_manifest(saved, tmp_path):
    from cemlib.core.settings import load_profile
    from cemlib.data.cache import SettingsFailEveryImage
    from cemlib.study import prepare

    before = digests(saved)
    for size in ([2048, 1024], [64, 32]):
        profile = load_profile("smoke", {"preprocess.cache": str(tmp_path / "cache"), "preprocess.size": size,
                                         "data.manifest": str(saved)})
        manifest = Manifest.load(saved)
        if size[0] == 2048:
            with pytest.raises(SettingsFailEveryImage, match=r"preprocess\.size=\[2048, 1024\]"):
                prepare.fill_cache(profile, manifest, workers=0, progress=False)
        else:
            assert prepare.fill_cache(profile, manifest, workers=0, progress=False)[1].built == 12
    assert digests(saved) == before
