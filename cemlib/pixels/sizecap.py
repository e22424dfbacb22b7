"""The size cap of a DICOM file, held before anything large is inflated or decoded.

Three numbers in a small file can claim gigabytes: Rows x Columns of one plane, NumberOfFrames times
that plane (with SamplesPerPixel and BitsAllocated), and, for the deflated transfer syntax, the length
of the data set once inflated (a 1 MB deflated file can inflate to 2 GB, which pydicom holds whole). The
first two are read from the header before the pixel data is decoded (any transfer syntax: native, RLE,
JPEG); the third is counted by inflating the file piece by piece, never holding more than one piece, and
stopping as soon as it passes the cap. Each check returns a reason (None when within the cap) for the
reader (``cemlib.pixels.imaging``) and the manifest's header check (``cemlib.data.sources.dicom``) to
raise with the file's name.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

#: Largest image plane read (rows, cols), checked from the header before any pixel is decoded: well above
#: the largest mammography detector (about 4,100 x 3,300), far below what would exhaust memory.
MAX_IMAGE_SIZE = (5000, 5000)
#: Bytes per pixel of the largest plane allowed once decoded: one grey sample of up to 32 bits (16-bit
#: integers, 32-bit FloatPixelData), so the decoded pixel data of a file may hold at most 5000 x 5000 x 4
#: bytes (100 MB) whatever its frames, samples and BitsAllocated say.
BYTES_PER_PIXEL = 4
#: What a deflated data set may hold beside its pixel data once inflated (header, private tags, icons).
HEADER_BYTES = 16 << 20
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_READ = 1 << 16
_PIECE = 1 << 20
_DEFLATED = "1.2.840.10008.1.2.1.99"


def plane_problem(rows: int, cols: int, max_size: tuple[int, int] = MAX_IMAGE_SIZE) -> str | None:
    """One plane of rows x cols above ``max_size`` (either axis)."""
    if rows <= max_size[0] and cols <= max_size[1]:
        return None
    return (f"image is {rows} x {cols} pixels (Rows x Columns), above the size cap of {max_size[0]} x "
            f"{max_size[1]} per plane; not decoded")


def max_pixel_bytes(max_size: tuple[int, int] = MAX_IMAGE_SIZE) -> int:
    """Most bytes the decoded pixel data of one file may take: one ``max_size`` plane of 4-byte pixels."""
    return int(max_size[0]) * int(max_size[1]) * BYTES_PER_PIXEL


def _count(ds: Any, keyword: str, default: int) -> int:
    value = ds.get(keyword, default)
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def pixel_layout(ds: Any) -> tuple[int, int, int, int, int]:
    """(frames, rows, cols, samples per pixel, bits allocated) the header states (absent: 1, 0, 0, 1, 16)."""
    return (max(1, _count(ds, "NumberOfFrames", 1)), _count(ds, "Rows", 0), _count(ds, "Columns", 0),
            max(1, _count(ds, "SamplesPerPixel", 1)), max(1, _count(ds, "BitsAllocated", 16)))


def decoded_bytes(ds: Any) -> int:
    """Bytes the pixel data takes once decoded: frames x rows x columns x samples x bits allocated / 8."""
    frames, rows, cols, samples, bits = pixel_layout(ds)
    return -(-frames * rows * cols * samples * bits // 8)


def pixel_bytes_problem(ds: Any, max_size: tuple[int, int] = MAX_IMAGE_SIZE) -> str | None:
    """Pixel data whose decoded size (all frames and samples) exceeds ``max_pixel_bytes``."""
    size, cap = decoded_bytes(ds), max_pixel_bytes(max_size)
    if size <= cap:
        return None
    frames, rows, cols, samples, bits = pixel_layout(ds)
    return (f"pixel data of {frames} frame(s) of {rows} x {cols} pixels x {samples} sample(s) x {bits} bits "
            f"takes {size / 1e6:,.0f} MB once decoded, above the cap of {cap / 1e6:,.0f} MB (one "
            f"{max_size[0]} x {max_size[1]} plane of {BYTES_PER_PIXEL}-byte pixels); not decoded")


def inflate_limit(max_size: tuple[int, int] = MAX_IMAGE_SIZE) -> int:
    """Longest inflated data set read from a deflated file: the pixel cap plus ``HEADER_BYTES``."""
    return max_pixel_bytes(max_size) + HEADER_BYTES


def _deflated_start(path: Path) -> int | None:
    """Offset of the deflated data set in ``path`` (where pydicom starts inflating), None if not deflated."""
    from pydicom.filereader import read_dataset, read_preamble

    try:
        with open(path, "rb") as fp:
            read_preamble(fp, False)
            meta = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                                stop_when=lambda tag, vr, length: tag.group != 2)
            if str(meta.get("TransferSyntaxUID", "")).strip() != _DEFLATED:
                return None
            return fp.tell()
    except Exception:  # not a DICOM file, or a damaged file meta: the full read reports it
        return None


def deflated_length(path: str | Path, limit: int) -> int | None:
    """Length of a deflated file's inflated data set; None when the file is not deflated.

    Inflated piece by piece and thrown away, so memory stays at one piece whatever the file claims;
    counting stops once the length passes ``limit`` (the number returned then exceeds ``limit``).
    Raises ValueError when the deflated stream is damaged or truncated.
    """
    path = Path(path)
    start = _deflated_start(path)
    if start is None:
        return None
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        with open(path, "rb") as fp:
            fp.seek(start)
            while not inflater.eof:
                data = fp.read(_READ)
                if not data:
                    break
                while True:  # a full piece may leave output pending: ask again until one falls short
                    piece = len(inflater.decompress(data, _PIECE))
                    total += piece
                    if total > limit:
                        return total
                    data = inflater.unconsumed_tail
                    if not data and (inflater.eof or piece < _PIECE):
                        break
            total += len(inflater.flush())
    except zlib.error as exc:
        raise ValueError(f"deflated data set is damaged ({exc})") from exc
    if not inflater.eof:
        raise ValueError(f"deflated data set is truncated (the stream ends after {total} inflated bytes)")
    return total


def inflated_problem(length: int | None, max_size: tuple[int, int] = MAX_IMAGE_SIZE) -> str | None:
    """A deflated data set longer than ``inflate_limit`` (``length`` from ``deflated_length``)."""
    limit = inflate_limit(max_size)
    if length is None or length <= limit:
        return None
    return (f"deflated data set inflates to more than {limit / 1e6:,.0f} MB, above the cap of "
            f"{max_pixel_bytes(max_size) / 1e6:,.0f} MB of pixel data (one {max_size[0]} x {max_size[1]} "
            f"plane of {BYTES_PER_PIXEL}-byte pixels) plus {HEADER_BYTES / 1e6:,.0f} MB of header; "
            "not inflated further")
