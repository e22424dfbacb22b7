"""What a manifest learns about each image file in one read, and the checks built on it.

``inspect_file`` reads a file once and returns its ``FileFacts``: the sha256 of its bytes, its size and
mtime (taken before the read, so a change while reading shows), the sampled digest (below), the digest of
its pixel data (DICOM: the PixelData element's bytes, so a copy with another header is still the same
image; other formats: the file's sha256), its SOPInstanceUID, and, on request, its pectoral corner
score (``cemlib.pixels.geometry``). ``duplicate_problems`` turns the facts of a dataset's images into
exclusion reasons for images stored twice.

The sampled digest is the content check every use of a manifest runs (``sampled_digest``): a blake2b
hash of the file's size, its first and last ``EDGE_BYTES`` (the whole DICOM header: UIDs, tags) and
``BLOCKS`` blocks of ``BLOCK_BYTES`` spread evenly between them; files up to ``WHOLE_BELOW`` bytes are
hashed whole. It catches a file replaced, retagged or swapped with another while keeping its size and
mtime, for about 0.2 MB read per file; an edit of a few pixels between the sampled blocks slips through,
and only the full sha256 of `cem manifest --verify` sees that.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import pydicom

from cemlib.pixels.geometry import grey_image, pectoral_score, view_contradictions

EDGE_BYTES = 64 * 1024
BLOCK_BYTES = 4 * 1024
BLOCKS = 32
WHOLE_BELOW = 2 * EDGE_BYTES + BLOCKS * BLOCK_BYTES


def sample_spans(size: int) -> list[tuple[int, int]]:
    """(offset, length) of the parts of a file of `size` bytes that its sampled digest reads."""
    if size <= WHOLE_BELOW:
        return [(0, size)]
    last = size - EDGE_BYTES - BLOCK_BYTES
    step = (last - EDGE_BYTES) / (BLOCKS - 1)
    blocks = [(EDGE_BYTES + round(i * step), BLOCK_BYTES) for i in range(BLOCKS)]
    return [(0, EDGE_BYTES), *blocks, (size - EDGE_BYTES, EDGE_BYTES)]


def _sampled(size: int, parts: Iterable[bytes]) -> str:
    digest = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def sampled_digest(path: str | os.PathLike) -> str:
    """The sampled digest of a file on disk (see the module docstring)."""
    with open(path, "rb", buffering=0) as handle:
        size = os.fstat(handle.fileno()).st_size
        return _sampled(size, (os.pread(handle.fileno(), length, offset)
                               for offset, length in sample_spans(size)))


def sampled_digest_of(data: bytes) -> str:
    """The sampled digest of a file's bytes already in memory (equal to ``sampled_digest`` of the file)."""
    view = memoryview(data)
    return _sampled(len(data), (view[offset:offset + length] for offset, length in sample_spans(len(data))))


@dataclass(frozen=True)
class FileFacts:
    """One image file as read once (see the module docstring); pectoral None when not scored."""

    sha256: str
    size: int
    mtime_ns: int
    sampled: str
    content: str
    sop_uid: str = ""
    pectoral: float | None = None


def inspect_file(path: str | os.PathLike, score_view: bool = False) -> FileFacts:
    """Read a file once: its checksums, pixel-data digest, SOPInstanceUID and (``score_view``) corner score.

    OSError when the file cannot be read; a file that is no DICOM gets its sha256 as content digest and
    no UID; a score that cannot be computed (an undecodable image) is None.
    """
    stat = os.stat(path)
    with open(path, "rb") as handle:
        data = handle.read()
    sha = hashlib.sha256(data).hexdigest()
    content, uid, dataset = sha, "", None
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except Exception:  # not DICOM (JPEG, PNG), or a damaged header the adapter's header check reports
        dataset = None
    if dataset is not None and "PixelData" not in dataset:
        dataset = None
    if dataset is not None:
        content = hashlib.sha256(dataset.PixelData).hexdigest()
        uid = str(dataset.get("SOPInstanceUID", "") or "").strip()
    score = None
    if score_view:
        try:
            score = pectoral_score(grey_image(data, dataset))
        except Exception:  # undecodable here: the image is not judged, preprocessing reports it
            score = None
    return FileFacts(sha, stat.st_size, stat.st_mtime_ns, sampled_digest_of(data), content, uid, score)


def _label(item: dict) -> str:
    """How a reason names an image: pseudonymous patient id, side, view, energy (never a file name)."""
    return f"{item['patient_id']} {item['side']} {item['view']} {item['energy']}"


def duplicate_problems(items: Iterable[dict]) -> list[tuple[str, str, str, str]]:
    """(patient_id, side, kind, reason) for patients holding an image that is stored more than once.

    `items`: dicts with patient_id, side, view, energy, path, content (pixel-data digest) and sop_uid.
    The same pixel data (kind duplicate_image) or the same SOPInstanceUID (kind duplicate_uid) under two
    files is a copy: under two patients, which patient and label the image belongs to is unknown, so
    every patient holding it is excluded; under two views of one patient, one image stands for two
    views. One row per patient and kind, naming its images and their copies by pseudonymous id and view.
    """
    items = list(items)
    found: dict[tuple[str, str], list[tuple[dict, list[dict]]]] = defaultdict(list)
    for key, kind in (("content", "duplicate_image"), ("sop_uid", "duplicate_uid")):
        groups: dict[str, dict[str, dict]] = defaultdict(dict)
        for item in items:
            if item.get(key):
                groups[item[key]][str(item["path"])] = item  # one file listed twice is one image
        for members in groups.values():
            for item in members.values():
                # two files of one view are a duplicate_view already (manifest._view_problems)
                copies = [m for m in members.values() if _label(m) != _label(item)]
                if copies:
                    found[(str(item["patient_id"]), kind)].append((item, copies))
    rows = []
    for (patient_id, kind), pairs in sorted(found.items()):
        pairs.sort(key=lambda pair: _label(pair[0]))
        what = "the same pixel data" if kind == "duplicate_image" else "the same SOPInstanceUID"
        listed = "; ".join(f"{_label(item)} = {', '.join(_label(c) for c in copies)}"
                           for item, copies in pairs[:4])
        more = f"; and {len(pairs) - 4} more" if len(pairs) > 4 else ""
        others = sorted({str(c["patient_id"]) for _, copies in pairs for c in copies} - {patient_id})
        if others:
            why = (f"the same image is stored under patient(s) {', '.join(others)}, so which patient and "
                   "label it belongs to is unknown: every patient holding it is excluded")
        else:
            why = "one image is stored as two views of this exam"
        sides = {str(item["side"]) for item, _ in pairs}
        rows.append((patient_id, sides.pop() if len(sides) == 1 else "", kind,
                     f"{len(pairs)} image(s) with {what} as another file ({listed}{more}): {why}"))
    return rows


def view_problems(items: Iterable[dict]) -> list[tuple[str, str, str, str]]:
    """(patient_id, side, kind, reason) for views whose low-energy pixels contradict their tags.

    `items`: images with patient_id, side, view, energy and pectoral (the corner score, None when not
    scored); see cemlib.pixels.geometry.view_contradictions for the rule.
    """
    scores: dict[str, dict[tuple[str, str], float | None]] = {}
    for item in items:
        if item["energy"] == "LE":
            scores.setdefault(str(item["patient_id"]), {})[(item["side"], item["view"])] = item["pectoral"]
    return [(pid, side, "view_mismatch", f"the view tag contradicts the image: {reason}")
            for pid, views in sorted(scores.items()) for side, _, reason in view_contradictions(views)]


def error_text(error: Exception) -> str:
    """An exception as a reason, without the file name an OSError carries (it may be a patient's name)."""
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    return type(error).__name__
