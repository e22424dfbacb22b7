"""No folder or file name reaches an output: the pipeline run on an exam stored under a name-like folder.

The reproduction of the issue: a GE-layout folder `Jane_Doe_1970` was the patient_id in breasts.csv,
images.csv and the `cem predict --manifest` scores, and the one-exam report showed it as
`[redacted]_[redacted]_1970`. Then: `cem manifest --verify` printed `changed: Jane_Doe_1970/L_CC_LE.dcm`,
label-workbook errors printed the cell text and the workbook's path, and images.csv kept the folder
name in its path column.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import torch

from cemlib import cli, synthetic
from cemlib.core.fileio import sha256_file
from cemlib.data.cache import TensorCache
from cemlib.data.integrity import sampled_digest
from cemlib.data.manifest import PRIVATE_NAMES, PRIVATE_PATHS, Manifest, assemble
from cemlib.data.sources import ge, mfmodel
from cemlib.model import networks as models
from cemlib.pixels.settings import PreprocessSettings
from tests.factories import save_calibrated_checkpoint

NAME = "Jane_Doe_1970"
SIZE = (64, 32)
ARCH = {"width": 0.0625, "global_pool": True, "head": (16, 8), "input_size": SIZE}
#: The name and its parts as tokens ("1970" not inside a longer number such as 0.19703 or 1970.5).
LEAKS = [re.compile(rf"(?<![A-Za-z0-9]){part}(?![A-Za-z0-9])") for part in ("Jane", "Doe")]
LEAKS.append(re.compile(r"(?<![0-9A-Za-z.])1970(?![0-9A-Za-z]|\.\d)"))
BINARY = {".npy", ".png", ".pt", ".pdf"}


def rename_patient(root: Path, old: str, new: str) -> None:
    """Store one synthetic patient under another folder name (folder, masks, labels.csv, lesions.csv)."""
    (root / old).rename(root / new)
    if (root / "masks" / old).is_dir():
        (root / "masks" / old).rename(root / "masks" / new)
    for table in ("labels.csv", "lesions.csv"):
        frame = pd.read_csv(root / table, dtype=str, keep_default_na=False)
        frame["patient_id"] = frame["patient_id"].replace(old, new)
        frame.to_csv(root / table, index=False)


def leaks(text: str) -> list[str]:
    return [match.group(0) for pattern in LEAKS for match in pattern.finditer(text)]


def scanned_text(path: Path) -> str:
    """What a reader of the file sees: text files whole (the manifest's path columns included)."""
    text = path.read_text(errors="replace")
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)  # inline figures


@pytest.mark.slow
def test_pipeline_outputs_never_hold_the_folder_name(tmp_path: Path, capsys) -> None:
    root = synthetic.write_cohort(tmp_path / "cohort", patients=4, seed=5, scale=0.05, workers=1)
    rename_patient(root, "SYN0002", NAME)
    manifest_dir, cache_dir, outputs = tmp_path / "manifest", tmp_path / "cache", tmp_path / "outputs"
    assert cli.main(["manifest", str(root), "--out", str(manifest_dir), "--split", "2", "1", "1"]) == 0
    assert cli.main(["preprocess", "--manifest", str(manifest_dir), "--cache", str(cache_dir),
                     "--set", f"preprocess.size=[{SIZE[0]},{SIZE[1]}]", "--workers", "1",
                     "--no-progress"]) == 0
    manifest = Manifest.load(manifest_dir)
    alias = ge.pseudonym(NAME)
    assert alias in set(manifest.breasts["patient_id"]) and alias.startswith("GE")
    study = {"manifest": manifest, "cache": TensorCache(cache_dir, PreprocessSettings(size=SIZE)),
             "base": outputs}
    outputs.mkdir()
    torch.manual_seed(1)
    checkpoint = save_calibrated_checkpoint(models.build_model("mf_concat", 2, **ARCH), study, "concat",
                                            "cem", SIZE)
    assert cli.main(["predict", "--checkpoint", str(checkpoint), "--manifest", str(manifest_dir),
                     "--cache", str(cache_dir), "--device", "cpu", "--out", str(outputs / "scores.csv")]) == 0
    scores = pd.read_csv(outputs / "scores.csv", dtype=str)
    assert alias in set(scores["patient_id"])
    assert cli.main(["predict", str(root / NAME), "--checkpoint", str(checkpoint), "--device", "cpu",
                     "--out", str(outputs / "report")]) == 0
    logs = capsys.readouterr()
    assert f"exam {alias}" in logs.out

    private = (manifest_dir / PRIVATE_NAMES, manifest_dir / PRIVATE_PATHS)
    assert all(NAME in p.read_text() for p in private)  # the user's own mappings hold the name, nothing else
    found = {}
    for folder in (manifest_dir, cache_dir, outputs):
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p not in private):
            if path.suffix in BINARY:
                data = path.read_bytes()
                hits = [part for part in ("Jane_Doe", "Jane", "Doe_1970") if part.encode() in data]
            else:
                hits = leaks(scanned_text(path))
            if hits:
                found[str(path.relative_to(tmp_path))] = hits
    for stream, text in (("stdout", logs.out), ("stderr", logs.err)):
        if leaks(text):
            found[stream] = leaks(text)
    assert not found, found
    assert {p.name for p in (outputs / "report").iterdir()} >= {"report.html"}


@pytest.fixture
def named_cohort(tmp_path: Path) -> Path:
    """Two phantom patients, one stored under the folder `Jane_Doe_1970`."""
    root = synthetic.write_cohort(tmp_path / "cohort", patients=2, seed=5, scale=0.03, workers=1)
    rename_patient(root, "SYN0002", NAME)
    return root


def test_manifest_tables_verify_and_cache_failures_hold_no_folder_name(named_cohort: Path, tmp_path: Path,
                                                                       capsys) -> None:
    manifest_dir = tmp_path / "manifest"
    assert cli.main(["manifest", str(named_cohort), "--out", str(manifest_dir), "--split", "1", "1", "0"]
                    ) == 0
    alias = ge.pseudonym(NAME)
    for table in ("images.csv", "exclusions.csv", "breasts.csv", "manifest.json"):
        assert not leaks((manifest_dir / table).read_text()), table
    manifest = Manifest.load(manifest_dir)
    rows = manifest.images[manifest.images.patient_id == alias]
    assert rows.path.str.startswith(f"@{alias}/").all()  # stored relative, the folder as its token
    assert all(manifest.image_path(row).is_file() for row in rows.to_dict("records"))
    private = pd.read_csv(manifest_dir / PRIVATE_PATHS, dtype=str)
    assert f"{NAME}/L_CC_LE.dcm" in set(private.on_disk)

    target = named_cohort / NAME / "L_CC_LE.dcm"  # the reproduction of the --verify line
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    capsys.readouterr()
    assert cli.main(["manifest", "--verify", str(manifest_dir)]) == 1
    out = capsys.readouterr().out
    assert f"changed: synthetic/{alias} L CC LE" in out and not leaks(out)

    # a file that fails preprocessing: its cache exclusion row stores the path as images.csv does
    bad = named_cohort / NAME / "R_MLO_LE.dcm"
    bad.write_bytes(b"not a dicom")
    images = manifest.images
    for row in (images.path == f"@{alias}/R_MLO_LE.dcm", images.path == f"@{alias}/L_CC_LE.dcm"):
        path = manifest.image_path(images[row].iloc[0])
        stat = path.stat()
        images.loc[row, ["sha256", "size", "mtime_ns", "sampled_digest"]] = [
            sha256_file(path), stat.st_size, stat.st_mtime_ns, sampled_digest(path)]
    result = TensorCache(tmp_path / "cache", PreprocessSettings(size=SIZE)).fill(manifest, progress=False)
    failed = result.exclusions[result.exclusions.patient_id == alias]
    assert failed.path.tolist() == [f"@{alias}/R_MLO_LE.dcm"]
    assert not leaks(result.exclusions.to_csv()), result.exclusions.to_csv()


def test_an_unreadable_file_is_named_by_its_stored_path_not_its_error_text(tmp_path: Path) -> None:
    folder = tmp_path / NAME
    folder.mkdir()
    images = [{"patient_id": ge.pseudonym(NAME), "side": s, "view": v, "energy": "LE",
               "path": f"{NAME}/{s}_{v}_LE.dcm", "rows": 8, "cols": 8} for s in "LR" for v in ("CC", "MLO")]
    for image in images[1:]:
        (tmp_path / image["path"]).write_bytes(os.urandom(64))
    breasts = [{"patient_id": ge.pseudonym(NAME), "side": s, "label": 0} for s in "LR"]
    manifest = assemble("ge", tmp_path, images, breasts, energies=("LE",), stored_path=ge.stored_path)
    (reason,) = manifest.exclusions.reason
    assert f"@{ge.pseudonym(NAME)}/L_CC_LE.dcm (FileNotFoundError: No such file or directory)" in reason
    assert not leaks(reason)


def test_label_workbook_errors_show_neither_the_cell_text_nor_the_folder(tmp_path: Path) -> None:
    from tests.test_sources_internal import write_mf_cohort

    root = write_mf_cohort(tmp_path / "mf")
    folder = root / NAME
    (root / "patient1").rename(folder)
    (root / "label.xlsx").rename(folder / "label.xlsx")  # a workbook inside the patient's folder
    workbook = openpyxl.load_workbook(folder / "label.xlsx")
    cell = f"{NAME} see notes"
    workbook["Sheet1"]["D9"] = cell  # not an image name: shifted columns
    workbook.save(folder / "label.xlsx")
    with pytest.raises(ValueError) as raised:
        mfmodel.scan(root)
    message = str(raised.value)
    assert f"label.xlsx of patient {mfmodel.pseudonym(NAME)} row 9" in message
    assert f"a text of {len(cell)} characters (not shown" in message
    assert not leaks(message) and str(tmp_path) not in message
