"""The file format of one tensor-cache entry: a .npy of the uint16-quantised (C, H, W) stack and a crc32
trailer, so a truncated or corrupt file is never served."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

import numpy as np

QUANT_SCALE = 65535.0
TRAILER_MAGIC = b"CRC3"
TRAILER_SIZE = 8


class CacheError(RuntimeError):
    """A cache entry is missing, truncated or corrupt (the message names the file)."""


@functools.lru_cache(maxsize=64)
def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The exact .npy header np.save writes for a uint16 C-order array of this shape."""
    buffer = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(np.dtype("<u2"))
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def quantise(array: np.ndarray) -> np.ndarray:
    """Map [0, 1] floats to uint16 (round(x * 65535)); values outside [0, 1] are clipped."""
    clipped = np.clip(np.nan_to_num(np.asarray(array, dtype=np.float32), nan=0.0), 0.0, 1.0)
    return np.rint(clipped * QUANT_SCALE).astype("<u2")


def dequantise(array: np.ndarray) -> np.ndarray:
    """Map stored uint16 back to float32 in [0, 1]."""
    return array.astype(np.float32) * np.float32(1.0 / QUANT_SCALE)


def encode_entry(stack: np.ndarray) -> bytes:
    """Bytes of one entry file: .npy of the quantised (C, H, W) stack, then the crc32 trailer."""
    quantised = np.ascontiguousarray(quantise(stack))
    payload = quantised.tobytes()
    trailer = TRAILER_MAGIC + struct.pack("<I", zlib.crc32(payload))
    return _npy_header(tuple(int(n) for n in quantised.shape)) + payload + trailer


def decode_entry(data: bytes, shape: tuple[int, int, int], source: Path) -> np.ndarray:
    """Check an entry file's bytes against the expected shape and its crc32; return the uint16 array."""
    header = _npy_header(shape)
    payload_size = int(np.prod(shape)) * 2
    expected = len(header) + payload_size + TRAILER_SIZE
    if len(data) != expected:
        raise CacheError(f"corrupt cache entry {source}: {len(data)} bytes, expected {expected} (truncated?)")
    if data[: len(header)] != header:
        raise CacheError(f"corrupt cache entry {source}: header does not describe a uint16 array {shape}")
    payload = memoryview(data)[len(header) : len(header) + payload_size]
    trailer = data[-TRAILER_SIZE:]
    if trailer[:4] != TRAILER_MAGIC or struct.unpack("<I", trailer[4:])[0] != zlib.crc32(payload):
        raise CacheError(f"corrupt cache entry {source}: checksum mismatch")
    return np.frombuffer(payload, dtype="<u2").reshape(shape)


def read_entry_file(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """Read and verify one entry file; float32 (C, H, W) in [0, 1]."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CacheError(f"cache entry missing: {path} (run `cem preprocess`)") from None
    return dequantise(decode_entry(data, shape, path))
