"""Quality control of the phantom: a sheet of exams to look at, and intensity histograms across datasets.

`qc_sheet` renders one exam per ACR density category, each with a different finding kind, so that the
four kinds (mass, calcifications, non-mass enhancement, asymmetry) and the four densities are on one
page: LE and DES of both views of the breast with the finding, and an LE close-up of it.
`intensity_histograms` puts the grey-level histograms of datasets side by side (raw, and as the
network sees them after the pipeline's window, crop and resize), to show the domain shift between the
internal cohort and the external replicas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cemlib.pixels.imaging import find_geometry, preprocess_pair, read_pixels
from cemlib.pixels.settings import PreprocessSettings
from cemlib.pixels.window import PreprocessError
from cemlib.synthetic.cohort import sample_cohort
from cemlib.synthetic.phantom import PatientSpec, render_exam

#: Density category and finding kind of each row of the sheet.
SHEET_ROWS = (("a", "calcifications"), ("b", "mass"), ("c", "non-mass enhancement"), ("d", "asymmetry"))
#: The paper's network input: 512 x 256, about scale 0.167 of the 3062 x 2394 grid.
SHEET_SCALE = 0.167
#: DES display window below and above the breast's median (raw units).
DES_WINDOW = (200.0, 450.0)


def pick_exams(seed: int = 0, rows: Sequence[tuple[str, str]] = SHEET_ROWS,
               search: int = 600) -> list[tuple[PatientSpec, str]]:
    """(patient, side) per (density, kind) row: the first sampled patient with such a breast finding.

    Rows alternate between a cancer that enhances at least moderately (so DES shows it) and a benign
    finding, so both classes show.
    """
    specs = sample_cohort(search, seed)
    chosen = []
    for index, (density, kind) in enumerate(rows):
        malignant = index % 2 == 0
        wanted = [lambda f, m=malignant: f.label == m and (not m or f.enhancement_level >= 2),
                  lambda f, m=malignant: f.label == m, lambda f: True]
        found = None
        for accept in wanted:
            found = next(((s, side) for s in specs if s.density == density
                          for side, b in s.breasts.items()
                          if any(les.kind == kind and accept(les.finding) for les in b.lesions)), None)
            if found:
                break
        if found is None:
            raise ValueError(f"no patient with density {density} and a {kind} finding among {search} sampled")
        chosen.append(found)
    return chosen


def _display(image: np.ndarray, breast: np.ndarray, energy: str) -> tuple[float, float]:
    """Display window: LE from below the fat to the 99.7th percentile; DES a fixed width around its median.

    Like a reading station's LE presentation, fat is dark grey rather than black (the window starts a
    quarter of its width below the breast's 1st percentile), so the skin line and the strands crossing
    the subcutaneous fat stay visible.

    A recombined image varies little outside enhancing tissue, so a percentile window would stretch
    its noise; like a reading station, DES is shown with a fixed window (DES_WINDOW raw units).
    """
    values = image[breast] if breast.any() else image.ravel()
    if energy == "DES":
        centre = float(np.median(values))
        return centre - DES_WINDOW[0], centre + DES_WINDOW[1]
    low, high = np.percentile(values, [1.0, 99.7])
    high = max(float(high), float(low) + 1.0)
    return float(low) - 0.25 * (high - float(low)), high


def _finding_text(spec: PatientSpec, side: str) -> str:
    breast = spec.breasts[side]
    parts = []
    for lesion in breast.lesions:
        f = lesion.finding
        calc = f", {f.morphology} calcs" if f.kind == "mass" and f.calcification != "none" else ""
        parts.append(f"{'malignant' if f.label else 'benign'} {f.kind}: {f.shape}, {f.margin}{calc}, "
                     f"{f.size_mm:.0f} mm, enh. {f.enhancement} {f.enhancement_level}")
    return (f"density {spec.density}, BPE {spec.bpe}, {side} BI-RADS {breast.birads} ({breast.pathology}): "
            + "; ".join(parts))


def qc_sheet(seed: int = 0, scale: float = SHEET_SCALE, panel_inches: float = 2.2) -> Figure:
    """The phantom's QC sheet: per density category one exam (LE, DES of CC and MLO, LE and DES close-ups)."""
    exams = pick_exams(seed)
    fig = Figure(figsize=(6 * panel_inches, len(exams) * panel_inches * 1.6), layout="constrained")
    rows = fig.subfigures(len(exams), 1)
    for row, (spec, side) in enumerate(exams):
        exam = render_exam(spec, scale)
        axes = rows[row].subplots(1, 6, squeeze=False)
        rows[row].suptitle(_finding_text(spec, side), fontsize=7.5, x=0.01, ha="left")
        for col, (view, energy) in enumerate((("CC", "LE"), ("MLO", "LE"), ("CC", "DES"), ("MLO", "DES"))):
            image = exam.images[(side, view, energy)].astype(np.float32)
            breast = exam.images[(side, view, "LE")] > 1000
            low, high = _display(image, breast, energy)
            ax = axes[0, col]
            ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            mask = exam.masks[(side, view)]
            if mask.any():
                ax.contour(mask, levels=[0.5], colors="tab:red", linewidths=0.5, alpha=0.6)
            ax.set_title(f"{side}{view} {energy}", fontsize=8)
            ax.set_axis_off()
        _close_up(axes[0, 4], exam, side, "LE")
        _close_up(axes[0, 5], exam, side, "DES")
    fig.suptitle(f"Synthetic CEM phantom, seed {seed}, scale {scale:g} "
                 f"({exam.images[(side, 'CC', 'LE')].shape[0]} x {exam.images[(side, 'CC', 'LE')].shape[1]})",
                 fontsize=10)
    return fig


def _close_up(ax, exam, side: str, energy: str) -> None:
    """One energy of the CC view around the breast's first finding, 4x the finding's size (mask outlined)."""
    image = exam.images[(side, "CC", energy)].astype(np.float32)
    rows = [r for r in exam.lesions if r["side"] == side and r["view"] == "CC"]
    ax.set_axis_off()
    if not rows:
        return
    cx, cy, radius = rows[0]["cx"], rows[0]["cy"], max(rows[0]["rx"], rows[0]["ry"], 6.0)
    half = int(2.0 * radius) + 6
    r0, c0 = max(0, int(cy) - half), max(0, int(cx) - half)
    patch = image[r0:int(cy) + half, c0:int(cx) + half]
    low, high = _display(image, exam.images[(side, "CC", "LE")] > 1000, energy)
    ax.imshow(patch, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    mask = exam.masks[(side, "CC")][r0:int(cy) + half, c0:int(cx) + half]
    if mask.any():
        ax.contour(mask, levels=[0.5], colors="tab:red", linewidths=0.5, alpha=0.5)
    ax.set_title(f"CC {energy} close-up", fontsize=8)


def write_qc_sheet(path: str | Path, seed: int = 0, scale: float = SHEET_SCALE) -> Path:
    """Render the QC sheet and save it as PNG (or any format matplotlib knows by the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    qc_sheet(seed, scale).savefig(path, dpi=110)
    return path


# ----------------------------------------------------------------------------------------- histograms
def _sample_pairs(manifest, n_images: int, seed: int) -> list[tuple[Path, Path | None, str]]:
    """Up to n (LE path, DES path or None, side) of a manifest, drawn at random with a seed."""
    images = manifest.images
    le_rows = images[images["energy"] == "LE"]
    if le_rows.empty:
        return []
    picked = le_rows.sample(n=min(n_images, len(le_rows)), random_state=seed)
    pairs = []
    for row in picked.itertuples(index=False):
        des = images[(images["patient_id"] == row.patient_id) & (images["side"] == row.side)
                     & (images["view"] == row.view) & (images["energy"] == "DES")]
        des_path = manifest.image_path(des.iloc[0]) if len(des) else None
        pairs.append((manifest.image_path(row._asdict()), des_path, row.side))
    return pairs


def intensity_histograms(manifests: Mapping[str, object],
                         settings: PreprocessSettings | Mapping[str, PreprocessSettings] | None = None,
                         n_images: int = 40, seed: int = 0, bins: int = 64) -> Figure:
    """Grey-level histograms of datasets side by side: raw tissue values per dataset, then all preprocessed.

    One panel per dataset with the raw grey levels of its sampled LE (and DES) images above the
    detector background (each dataset in its own units: 14-bit, 8-bit ...), and a last panel with the
    same images after the pipeline (window, crop, resize to `settings.size`, [0, 1]), the distribution
    the network is trained and tested on. `settings` may name one set per dataset (a detector's own
    window, as the profile's external.<name>.preprocess gives it).
    """
    default = PreprocessSettings(size=(128, 64))
    if isinstance(settings, Mapping):
        per_dataset = dict(settings)
    else:
        per_dataset = {name: settings or default for name in manifests}
    names = list(manifests)
    columns = 2
    rows = (len(names) + 1 + columns - 1) // columns
    fig = Figure(figsize=(7.0, 2.7 * rows), layout="constrained")
    grid = fig.subplots(rows, columns, squeeze=False)
    axes = list(grid.ravel())
    for spare in axes[len(names) + 1:]:
        spare.set_axis_off()
    axes = axes[: len(names) + 1]
    for ax, name in zip(axes, names, strict=False):
        processed = {"LE": [], "DES": []}
        raw = {"LE": [], "DES": []}
        mine = per_dataset.get(name, default)
        for le_path, des_path, side in _sample_pairs(manifests[name], n_images, seed):
            le = read_pixels(le_path)
            des = read_pixels(des_path) if des_path is not None else None
            try:
                le01, des01 = preprocess_pair(le, des, side, mine, str(le_path))
            except PreprocessError:
                continue
            tissue = le > find_geometry(le, side, mine, str(le_path)).window[0]  # the pipeline's tissue
            raw["LE"].append(le[tissue].ravel())
            processed["LE"].append(le01[le01 > 0])
            if des is not None:
                raw["DES"].append(des[tissue].ravel())
                processed["DES"].append(des01[des01 > 0])
        for energy, style in (("LE", "-"), ("DES", "--")):
            if raw[energy]:
                values = np.concatenate(raw[energy])
                ax.hist(values, bins=bins, histtype="step", density=True, linestyle=style, label=energy)
                axes[-1].hist(np.concatenate(processed[energy]), bins=bins, range=(0, 1), histtype="step",
                              density=True, linestyle=style, label=f"{name} {energy}")
        ax.set_title(f"{name}: raw grey levels", fontsize=9)
        ax.set(xlabel="raw grey level (the detector's units)", ylabel="share of tissue pixels")
        ax.legend(fontsize=8)
    axes[-1].set_title("after preprocessing (network input)", fontsize=9)
    axes[-1].set(xlabel="preprocessed value (0 to 1)", ylabel="share of tissue pixels")
    axes[-1].legend(fontsize=7, framealpha=0.85)
    for ax in axes:
        ax.tick_params(labelsize=8)
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
        ax.set_yticks([])  # densities of different units: their shapes compare, their heights do not
    return fig
