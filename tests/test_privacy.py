"""No folder or file name reaches an output: the pipeline run on an exam stored under a name-like folder.

The reproduction of the issue: a GE-layout folder `Jane_Doe_1970` was the patient_id in breasts.csv,
images.csv and the `cem predict --manifest` scores, and the one-exam report showed it as
`[redacted]_[redacted]_1970`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from cemlib import cli, synthetic
from cemlib.data.cache import TensorCache
from cemlib.data.manifest import PRIVATE_NAMES, Manifest
from cemlib.data.sources import ge
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
#: Columns that hold on-disk paths: the manifest is the index to the files and stays with them (documented).
PATH_COLUMNS = ("path", "mask_path")


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
    """What a reader of the file sees: text files whole (manifest tables without their path columns)."""
    if path.suffix == ".csv" and path.name in ("images.csv", "exclusions.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return frame.drop(columns=[c for c in PATH_COLUMNS if c in frame.columns]).to_csv(index=False)
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

    private = manifest_dir / PRIVATE_NAMES
    assert NAME in private.read_text()  # the user's own mapping holds the name, and nothing else does
    found = {}
    for folder in (manifest_dir, cache_dir, outputs):
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p != private):
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
