"""One exam from a folder: find its views, preprocess them in memory, score both breasts, explain, report.

`cem predict STUDY --checkpoint C [--out DIR]` runs `predict_exam` and `write_report`.

Finding the views. STUDY holds the eight CEM images (LE and DES of LCC, LMLO, RCC, RMLO) or the four
FFDM images (taken as LE) of one exam, directly or one folder down (a CDD-CESM exam keeps its LE and
subtracted images in two folders). A file's side, view and energy come from its name when the name follows
a known layout, using the source adapters' own patterns:
- GE / synthetic:  L_CC_LE.dcm, R_MLO_DES.dcm                                    (data.sources.ge)
- MF_MODEL:        <name>_LOW_ENERGY|RECOMBINED_CC|MLO_R|L.dcm                    (data.sources.mfmodel)
- CDD-CESM:        P<id>_<L|R>_<DM|CM>_<CC|MLO>.jpg, stray spaces allowed          (data.sources.cddcesm)
- INbreast:        <FileName>_<hash>_MG_<L|R>_<CC|ML>_ANON.dcm                     (data.sources.inbreast)
and a named DICOM's header must agree with its name (data.sources.check_mg_header). Other DICOM files
(any name, ``.dcm`` or no extension) are placed by their tags: ImageLaterality (or Laterality),
ViewPosition (or the view code), and LOW_ENERGY / RECOMBINED in ImageType or SeriesDescription (neither:
an FFDM image, taken as LE). Two files for one view, files of two patients, a missing view, or a CEM model
given no DES images raise `ExamError` naming the files or the views; other views (ML, XCCL, FB),
high-energy images and non-MG objects are left out with a note.

Scoring. Views are preprocessed with the settings stored in the checkpoint (those its training cache
used), stacked in VIEW_ORDER as x (4, C, H, W) and scored by the model: each breast's malignancy
probability, called malignant at 0.5 or above, and for none/left_right (and stage-1 image models) each
view's probability; the breast's is then the mean of its CC and MLO views, exactly as
cemlib.inference.scoring scores a manifest. Grad-CAM++ maps (cemlib.inference.cams) come from the same
forward pass.

Privacy. PatientName, PatientID and the birth date are read from the headers only to keep them out of
what is printed and written: any occurrence in the folder or file names shown is replaced by
"[redacted]", and the exam (whose folder and file names may be a patient's name) is shown only under
its layout adapter's pseudonym (MF_MODEL's, or the GE layout's, which keeps synthetic SYN#### ids).
"""

from __future__ import annotations

import base64
import html
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cemlib import __version__
from cemlib.core.fileio import atomic_write_text, save_figure
from cemlib.core.views import SIDES, VIEW_ORDER, VIEWS
from cemlib.core.vocab import INPUT_ENERGIES, check_inputs
from cemlib.data.cache import expected_raw_range
from cemlib.data.sources import cddcesm, ge, inbreast, mfmodel
from cemlib.data.sources.dicom import (
    ImageRejected,
    check_mg_header,
    header_energies,
    header_text,
    header_view,
    read_header,
)
from cemlib.inference.cams import explain_exam, image_cams, plot_exam_cams
from cemlib.inference.predict import LoadedModel, load_for_inference
from cemlib.model import networks as models
from cemlib.pixels.imaging import exam_des_bounds, preprocess_pair, read_pixels
from cemlib.pixels.settings import PreprocessSettings

#: Default report folder inside STUDY.
REPORT_DIR = "cem_report"
THRESHOLD = 0.5
JPEG_SUFFIXES = {".jpg", ".jpeg"}
IMAGE_SUFFIXES = {".dcm", ".dicom", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
REDACTED = "[redacted]"
#: Layout names, as shown to the user.
GE, MFMODEL, CDDCESM, INBREAST, TAGS = "GE/synthetic", "MF_MODEL", "CDD-CESM", "INbreast", "DICOM tags"
ENERGY_WORDS = {"LE": "low energy (LE)", "DES": "recombined (DES)"}
MAP_NOTE = (
    "Each overlay is a Grad-CAM++ map (Chattopadhay et al., 2018) computed on the last convolutional "
    "block of the network for its own breast's malignancy score (the log-odds of malignant vs benign). "
    "Warm colours mark the image regions whose features raise that score most. Maps are scaled to [0, 1] "
    "per view, so they show where the network looks, not how certain it is: a breast called benign "
    "still has a map, and its peak is not a finding. Right-breast views are shown in radiological "
    "orientation; the network saw them mirrored so that every breast faces the same way."
)
RESEARCH_NOTE = (
    "Research tool, not a medical device. The probabilities come from a model trained on the data named "
    "in its checkpoint and have not been validated for clinical use; they must not guide the care of a "
    "patient."
)


class ExamError(ValueError):
    """An exam folder that cannot be scored: missing, duplicated or contradictory views (names them)."""


# ------------------------------------------------------------------------------------------ finding views


@dataclass(frozen=True)
class ExamFile:
    """One image of the exam: where it is and what it shows."""

    path: Path
    side: str
    view: str
    energy: str
    layout: str
    exam_key: str = ""  # what the name says about the patient (CDD-CESM number, INbreast hash, MF name)


@dataclass
class ExamFiles:
    """The images found in an exam folder, keyed by (side, view, energy), and notes on files left out."""

    folder: Path
    files: dict[tuple[str, str, str], ExamFile]
    skipped: list[str] = field(default_factory=list)
    unrecognised: list[str] = field(default_factory=list)
    private: tuple[str, ...] = ()  # header identifiers, kept only to redact them

    @property
    def energies(self) -> set[str]:
        """Energies present (LE, DES)."""
        return {key[2] for key in self.files}

    @property
    def layouts(self) -> list[str]:
        """Layouts the files were recognised by, in first-seen order."""
        return list(dict.fromkeys(f.layout for f in self.files.values()))

    def redact(self, text: str) -> str:
        """`text` with the exam's folder name (as a path component) and MF_MODEL name prefixes replaced by
        its pseudonym, then every header identifier (name parts, ID, birth date) by [redacted]."""
        text = re.sub(rf"(?:(?<=[/\\])|^){re.escape(self.folder.name)}(?![A-Za-z0-9])", self.label(), text)
        for key in sorted({f.exam_key for f in self.files.values() if f.layout == MFMODEL and f.exam_key},
                          key=len, reverse=True):
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", self.label(), text)
        for token in sorted(self.private, key=len, reverse=True):
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", REDACTED, text,
                          flags=re.IGNORECASE)
        return text

    def label(self) -> str:
        """The exam's name as shown: the pseudonym its layout's manifest gives the folder name."""
        if MFMODEL in self.layouts:
            return mfmodel.pseudonym(self.folder.name)
        # The folder name may be a patient's name: shown as the GE layout's pseudonym.
        return ge.pseudonym(self.folder.name)

    def shown_name(self, item: ExamFile) -> str:
        """A file's name as shown in reports (MF_MODEL: the name part replaced by the pseudonym)."""
        name = item.path.name
        if item.layout == MFMODEL and item.exam_key:
            name = self.label() + name[len(item.exam_key):]
        return self.redact(name)


def _candidate_files(folder: Path, exclude: Iterable[Path]) -> list[Path]:
    """Visible files in `folder` and its visible sub-folders (one level), report folders excluded."""
    excluded = {p.resolve() for p in exclude}
    found = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith(".") or child.resolve() in excluded:
            continue
        if child.is_file():
            found.append(child)
        elif child.is_dir() and child.name != REPORT_DIR:
            found += [p for p in sorted(child.iterdir()) if p.is_file() and not p.name.startswith(".")]
    return found


def _is_dicom(path: Path) -> bool:
    """A .dcm/.dicom file, or an extension-less file with the DICM preamble."""
    suffix = path.suffix.lower()
    if suffix in (".dcm", ".dicom"):
        return True
    if suffix:
        return False
    with path.open("rb") as handle:
        return handle.read(132)[128:132] == b"DICM"


def parse_file_name(path: Path) -> ExamFile | str | None:
    """What a file's name says (a known layout), a reason to leave it out, or None for an unknown name."""
    name, suffix = path.name, path.suffix.lower()
    if suffix in JPEG_SUFFIXES:
        parsed = cddcesm.parse_image_name(name)
        if parsed is None:
            return None
        return ExamFile(path, parsed.side, parsed.view, parsed.energy, CDDCESM, parsed.patient_id)
    if suffix != ".dcm":
        return None
    match = ge.NAME.match(name)
    if match:
        return ExamFile(path, match["side"].upper(), match["view"].upper(), match["energy"].upper(), GE)
    match = mfmodel.STEM.match(path.stem)
    if match:
        return ExamFile(path, match["side"].upper(), match["view"].upper(),
                        mfmodel.ENERGY[match["energy"].upper()], MFMODEL, match["name"])
    parsed_dicom = inbreast.parse_dicom_name(name)
    if parsed_dicom is not None:
        if parsed_dicom.view is None:
            return f"{name}: view {parsed_dicom.view_code} is not CC or MLO"
        return ExamFile(path, parsed_dicom.side, parsed_dicom.view, "LE", INBREAST, parsed_dicom.patient_id)
    return None


def _private_values(ds: Any) -> list[str]:
    """PatientName parts, PatientID and birth date of a header (to redact, never to show)."""
    values = [str(ds.get("PatientID", "") or ""), str(ds.get("PatientBirthDate", "") or "")]
    values += re.split(r"[\^\s=,]+", str(ds.get("PatientName", "") or ""))
    return [v.strip() for v in values if len(v.strip()) >= 3]


def _from_tags(path: Path, ds: Any) -> ExamFile | str:
    """Side, view and energy of an unnamed DICOM from its header, or the reason it is left out."""
    modality = header_text(ds.get("Modality"))
    if modality != "MG":
        return f"{path.name}: Modality {modality or 'missing'}, not a mammogram (MG)"
    side = header_text(ds.get("ImageLaterality")) or header_text(ds.get("Laterality"))
    stated = header_view(ds)
    if side not in SIDES:
        raise ExamError(f"{path}: the file name is not one of a known layout and ImageLaterality is "
                        f"{side or 'missing'!s}; cannot tell which breast it shows")
    if stated is None:
        raise ExamError(f"{path}: the file name is not one of a known layout and the header names no view "
                        "(ViewPosition); cannot tell CC from MLO")
    if stated[0] not in VIEWS:
        return f"{path.name}: {stated[1]} is not CC or MLO"
    energies = header_energies(ds)
    if "HE" in energies and len(energies) == 1:
        return f"{path.name}: a high-energy image (only LE and DES are used)"
    energies.discard("HE")
    if len(energies) > 1:
        raise ExamError(f"{path}: ImageType/SeriesDescription name both low energy and recombined")
    return ExamFile(path, side, stated[0], energies.pop() if energies else "LE", TAGS)


def _check_named_header(item: ExamFile, ds: Any) -> None:
    """A named DICOM's header must agree with its name (modality, side, view, energy)."""
    try:
        check_mg_header(item.path, item.side, item.view, item.energy)
    except ImageRejected as exc:
        raise ExamError(f"{item.path}: {exc.reason}") from exc


def _header(path: Path) -> Any:
    """A DICOM header (pixels deferred); ExamError naming the file when unreadable."""
    try:
        return read_header(path)
    except ImageRejected as exc:
        raise ExamError(f"{path}: {exc.reason}") from exc


def find_exam(study: str | os.PathLike, exclude: Iterable[str | os.PathLike] = ()) -> ExamFiles:
    """The views of one exam in a folder (see the module docstring); ExamError for contradictions."""
    folder = Path(study)
    if not folder.is_dir():
        raise FileNotFoundError(f"exam folder not found: {folder}")
    exam = ExamFiles(folder=folder, files={})
    patient_ids: dict[str, Path] = {}
    private: set[str] = set()
    try:
        for path in _candidate_files(folder, [Path(p) for p in exclude]):
            item = parse_file_name(path)
            if isinstance(item, str):
                exam.skipped.append(item)
                continue
            ds = None
            if (item is not None and path.suffix.lower() == ".dcm") or (item is None and _is_dicom(path)):
                ds = _header(path)
                private.update(_private_values(ds))
                _check_same_patient(path, ds, patient_ids)
                if item is not None:
                    _check_named_header(item, ds)
                else:
                    item = _from_tags(path, ds)
                    if isinstance(item, str):
                        exam.skipped.append(item)
                        continue
            if item is None:
                if ds is not None or path.suffix.lower() in IMAGE_SUFFIXES:
                    exam.unrecognised.append(path.name)
                continue  # not an image (desktop.ini, notes, tables)
            _add(exam, item)
        exam.private = tuple(sorted(private))
        _check_one_exam(exam)
    except ExamError as exc:
        # Messages name files, and file or folder names may hold the patient's name: redact them.
        exam.private = tuple(sorted(private))
        raise ExamError(exam.redact(str(exc))) from None
    return exam


def _check_same_patient(path: Path, ds: Any, seen: dict[str, Path]) -> None:
    """Two DICOMs with different PatientID tags are two patients (the IDs themselves are never shown)."""
    patient = str(ds.get("PatientID", "") or "").strip()
    if not patient:
        return
    if seen and patient not in seen:
        other = next(iter(seen.values()))
        raise ExamError(f"{other} and {path} belong to different patients (their PatientID tags differ); "
                        "STUDY must hold one exam")
    seen.setdefault(patient, path)


def _add(exam: ExamFiles, item: ExamFile) -> None:
    """Add a view; two files for one view raise ExamError naming both."""
    key = (item.side, item.view, item.energy)
    if key in exam.files:
        first = exam.files[key].path
        raise ExamError(f"two files for {item.side}{item.view} {ENERGY_WORDS[item.energy]}: {first} and "
                        f"{item.path}; keep one (STUDY must hold one exam)")
    exam.files[key] = item


def _check_one_exam(exam: ExamFiles) -> None:
    """Names that carry a patient (CDD-CESM number, INbreast hash, MF name) must agree within a layout."""
    first: dict[str, ExamFile] = {}
    for item in exam.files.values():
        if not item.exam_key:
            continue
        seen = first.setdefault(item.layout, item)
        if seen.exam_key.casefold() != item.exam_key.casefold():
            raise ExamError(f"{seen.path.name} and {item.path.name} are named for different patients "
                            f"({item.layout} names); STUDY must hold one exam")


def energies_for(inputs: str) -> tuple[str, ...]:
    """Energies a model's inputs need: ('LE', 'DES') for cem, ('LE',) for le."""
    check_inputs(inputs)
    return INPUT_ENERGIES[inputs]


def select_views(exam: ExamFiles, inputs: str) -> dict[str, tuple[ExamFile, ExamFile | None]]:
    """VIEW_ORDER key -> (LE file, DES file or None) for the model's inputs; ExamError naming what lacks."""
    wanted = energies_for(inputs)
    shown = exam.redact(str(exam.folder))
    if "DES" in wanted and "DES" not in exam.energies and exam.files:
        raise ExamError(f"{shown}: the model takes LE + DES (CEM) images but the folder holds no "
                        "recombined (DES) images; an FFDM exam needs an LE model (inputs le)")
    missing = [f"{side}{view} {energy}" for side in SIDES for view in VIEWS for energy in wanted
               if (side, view, energy) not in exam.files]
    if missing:
        hint = ""
        if exam.unrecognised:
            names = ", ".join(exam.redact(n) for n in exam.unrecognised[:6])
            hint = f"; files with names of no known layout: {names}"
        if exam.skipped:
            hint += f"; left out: {'; '.join(exam.redact(s) for s in exam.skipped[:6])}"
        raise ExamError(f"{shown}: missing view(s) {', '.join(missing)} "
                        f"(found {len(exam.files)} usable image(s)){hint}")
    return {
        f"{side}{view}": (exam.files[(side, view, "LE")],
                          exam.files[(side, view, "DES")] if "DES" in wanted else None)
        for side, view in ((k[0], k[1:]) for k in VIEW_ORDER)
    }


def load_views(views: Mapping[str, tuple[ExamFile, ExamFile | None]], settings: PreprocessSettings
               ) -> torch.Tensor:
    """Read and preprocess the selected views in memory: x (4, C, H, W) float32 in VIEW_ORDER."""
    des_images = {key: read_pixels(views[key][1].path) for key in VIEW_ORDER if views[key][1] is not None}
    bounds = exam_des_bounds(list(des_images.values()), settings)
    planes = []
    for key in VIEW_ORDER:
        le_file, _ = views[key]
        le = read_pixels(le_file.path, expected_range=expected_raw_range(settings))
        le01, des01 = preprocess_pair(le, des_images.get(key), key[0], settings, source=str(le_file.path),
                                      des_bounds=bounds)
        planes.append(np.stack([le01] if des01 is None else [le01, des01]))
    return torch.from_numpy(np.stack(planes))


# ------------------------------------------------------------------------------------------------ model


def load_exam_model(checkpoint: str | os.PathLike, inputs: str | None = None, device: str | None = None
                    ) -> LoadedModel:
    """Load a stage-2 (or stage-1) checkpoint with its preprocessing settings, in evaluation mode."""
    return load_for_inference(checkpoint, inputs, device)


def _probabilities(model: nn.Module, outputs: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(breast (2,), view (4,) or None) malignant probabilities from one exam's model outputs."""
    if isinstance(model, models.ImageClassifier):
        views = models.malignant_probability(outputs)[None]
    else:
        views = models.view_probability(outputs)
    if views is not None:  # in float64: the report's mean matches the shown views' mean exactly
        views = views.double()
    breast = models.breast_from_views(views) if views is not None else models.malignant_probability(outputs)

    def plain(values: torch.Tensor) -> np.ndarray:
        return values[0].detach().cpu().numpy().astype(np.float64)

    return plain(breast), None if views is None else plain(views)


def run_model(model: nn.Module, x: torch.Tensor, cams: bool = True
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Score one exam x (4, C, H, W): (breast probabilities (2,), view probabilities (4,) or None,
    each view's Grad-CAM++ map for its own breast (4, H, W) or None), from a single forward pass."""
    device = next(model.parameters()).device
    is_image_model = isinstance(model, models.ImageClassifier)
    if not cams:
        with torch.no_grad():
            batch = x.to(device)
            outputs = model(batch) if is_image_model else model(batch[None])
        return (*_probabilities(model, outputs), None)
    captured: list[Any] = []
    handle = model.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        if is_image_model:
            maps = image_cams(model, x, target_class=1)
        else:
            maps = explain_exam(model, x)["own"]
    finally:
        handle.remove()
    return (*_probabilities(model, captured[-1]), np.asarray(maps, dtype=np.float32))


# ----------------------------------------------------------------------------------------------- report


@dataclass
class ExamPrediction:
    """One exam's scores (and maps) from one model."""

    exam: ExamFiles
    model: LoadedModel
    views: dict[str, tuple[ExamFile, ExamFile | None]]
    x: torch.Tensor
    breast: dict[str, float]
    per_view: dict[str, float] | None
    cams: np.ndarray | None
    timings: dict[str, float]

    def call(self, side: str) -> str:
        """'malignant' when the breast's probability is at least the 0.5 threshold, else 'benign'."""
        return "malignant" if self.breast[side] >= THRESHOLD else "benign"


def predict_exam(study: str | os.PathLike, checkpoint: str | os.PathLike | LoadedModel,
                 inputs: str | None = None, device: str | None = None, cams: bool = True,
                 exclude: Iterable[str | os.PathLike] = ()) -> ExamPrediction:
    """Find, preprocess and score one exam folder (and compute its Grad-CAM++ maps unless cams=False)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if isinstance(checkpoint, LoadedModel):
        loaded = checkpoint
    else:
        loaded = load_exam_model(checkpoint, inputs, device)
    timings["load_model_s"] = time.perf_counter() - started
    mark = time.perf_counter()
    exam = find_exam(study, exclude)
    views = select_views(exam, loaded.inputs)
    timings["find_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    x = load_views(views, loaded.settings)
    timings["preprocess_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    breast, per_view, maps = run_model(loaded.model, x, cams)
    timings["model_s" if not cams else "model_and_cams_s"] = time.perf_counter() - mark
    return ExamPrediction(
        exam=exam, model=loaded, views=views, x=x,
        breast={side: float(p) for side, p in zip(SIDES, breast, strict=True)},
        per_view=None if per_view is None else dict(zip(VIEW_ORDER, per_view.tolist(), strict=True)),
        cams=maps, timings=timings,
    )


def describe_model(loaded: LoadedModel) -> str:
    """One line on the model: name, backbone width, head, input size, checkpoint file."""
    arch = loaded.arch
    head = "global pool" if arch.get("global_pool") else "flatten"
    size = " x ".join(str(int(s)) for s in arch["input_size"])
    epoch = f", epoch {loaded.epoch}" if loaded.epoch is not None else ""
    return (f"{loaded.name} (VGG16-BN width {float(arch['width']):g}, {head} head "
            f"{list(arch['head'])}, input {size}; checkpoint {loaded.path.name}{epoch})")


def summary_lines(result: ExamPrediction) -> list[str]:
    """What `cem predict STUDY` prints: exam, model, each breast's probability and call, views."""
    exam = result.exam
    energies = "LE + DES" if result.model.inputs == "cem" else "LE"
    lines = [f"exam {exam.label()}: {len(exam.files)} image(s) found ({', '.join(exam.layouts)} names), "
             f"{energies} used",
             f"model {describe_model(result.model)}"]
    if result.model.inputs == "le" and "DES" in exam.energies:
        lines.append("note: an LE model; the exam's DES images are not used")
    lines += [f"note: left out {exam.redact(s)}" for s in exam.skipped]
    if exam.unrecognised:
        lines.append(f"note: {len(exam.unrecognised)} file(s) with names of no known layout left out: "
                     f"{', '.join(exam.redact(n) for n in exam.unrecognised[:8])}")
    for side in SIDES:
        name = "left" if side == "L" else "right"
        lines.append(f"{side} ({name} breast): p(malignant) = {result.breast[side]:.4f} -> "
                     f"{result.call(side)} (threshold {THRESHOLD:g})")
    if result.per_view is not None:
        lines.append("per view: " + ", ".join(f"{k} {p:.4f}" for k, p in result.per_view.items()))
    return lines


def _png_data_uri(path: Path) -> str:
    """An image file as a data: URI for a self-contained HTML page."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(result: ExamPrediction, figure: Path | None) -> str:
    """The one-page, self-contained HTML report (images inline as base64)."""
    esc = html.escape
    exam, loaded = result.exam, result.model
    label = exam.label()
    rows = "".join(
        f"<tr><td>{'Left' if s == 'L' else 'Right'} ({s})</td><td>{result.breast[s]:.4f}</td>"
        f"<td class='{result.call(s)}'>{result.call(s)}</td></tr>" for s in SIDES)
    view_rows = ""
    if result.per_view is not None:
        view_rows = ("<h2>Per view</h2><table><tr><th>View</th><th>p(malignant)</th></tr>"
                     + "".join(f"<tr><td>{k}</td><td>{p:.4f}</td></tr>" for k, p in result.per_view.items())
                     + "</table><p class='small'>A breast's probability is the mean of its CC and MLO "
                       "views.</p>")
    files = "".join(
        f"<tr><td>{key}</td><td>{esc(exam.shown_name(le))}</td>"
        f"<td>{esc(exam.shown_name(des)) if des is not None else '&mdash;'}</td></tr>"
        for key, (le, des) in result.views.items())
    skipped = "".join(f"<li>{esc(exam.redact(s))}</li>" for s in exam.skipped)
    skipped_block = f"<p class='small'>Left out:</p><ul class='small'>{skipped}</ul>" if skipped else ""
    image = (f"<img alt='LE, DES and Grad-CAM++ overlays of the four views' src='{_png_data_uri(figure)}'>"
             if figure is not None else "<p>Grad-CAM++ maps were not computed for this report.</p>")
    arch = loaded.arch
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>CEM exam report: {esc(label)}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 1.5em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
td, th {{ border: 1px solid #bbb; padding: 0.25em 0.7em; text-align: left; }}
.malignant {{ color: #b00; font-weight: bold; }} .benign {{ color: #060; }}
.small {{ font-size: 0.85em; color: #555; }} img {{ max-width: 100%; }}
.note {{ background: #f4f4f4; padding: 0.6em 1em; border-left: 4px solid #999; }}
</style></head><body>
<h1>CEM exam report: {esc(label)}</h1>
<p>Model: <b>{esc(loaded.name)}</b> &mdash; fusion {esc(str(arch['fusion']))}, inputs {esc(loaded.inputs)}
({'LE + DES' if loaded.inputs == 'cem' else 'LE only'}), VGG16-BN width {float(arch['width']):g},
head {esc(str(list(arch['head'])))}, input {int(arch['input_size'][0])} x {int(arch['input_size'][1])};
checkpoint {esc(loaded.path.name)}; preprocessing {esc(loaded.settings.window)} window, settings
{esc(loaded.settings.digest())}.</p>
<h2>Malignancy probability per breast</h2>
<table><tr><th>Breast</th><th>p(malignant)</th><th>Call (threshold {THRESHOLD:g})</th></tr>{rows}</table>
{view_rows}
<h2>Where the network looks</h2>
{image}
<p class="note">{esc(MAP_NOTE)}</p>
<h2>Images used</h2>
<table><tr><th>View</th><th>LE</th><th>DES</th></tr>{files}</table>
<p class="small">Recognised by {esc(', '.join(exam.layouts))} names.</p>
{skipped_block}
<p class="note"><b>{esc(RESEARCH_NOTE)}</b></p>
<p class="small">cemlib {esc(__version__)}</p>
</body></html>
"""


def write_report(result: ExamPrediction, out: str | os.PathLike) -> dict[str, Path]:
    """Write the overlay figure (cams.png, when maps exist) and report.html into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if result.cams is not None:
        fig = plot_exam_cams(result.x, result.cams, result.breast, mirror_right=True)
        written["cams"] = save_figure(fig, out / "cams.png", dpi=150, tight=True)[0]
    atomic_write_text(out / "report.html", render_html(result, written.get("cams")))
    written["html"] = out / "report.html"
    return written
