"""The safetensors file format, read with every size checked before anything is loaded.

A file is an 8-byte little-endian header length, a JSON header (``{"name": {"dtype": "F32",
"shape": [2, 3], "data_offsets": [begin, end]}, …, "__metadata__": {str: str}}``), then the raw
little-endian bytes of every tensor, back to back. It is the format Hugging Face writes with
``save_pretrained`` and reads everywhere; it holds no code (unlike a pickle) and, unlike an
``.npz`` (a zip that may be compressed), a tensor's bytes in memory are its bytes on disk, so a
file of N bytes never takes more than N bytes to load.

cardgen reads and writes it itself (one small module, no new dependency) so that the reader can refuse a
file before it reads a tensor: header too large or not JSON, a dtype or shape that is not what the
caller expects, offsets that overlap, leave holes or run past the end of the file (truncated).
The tests read cardgen's files with the ``safetensors`` package and cardgen reads that package's.
"""

from __future__ import annotations

import json
import math
import os
import struct

import numpy as np

# safetensors dtype name -> NumPy dtype (little-endian); the ones cardgen can hold as NumPy arrays.
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
          "U8": "u1", "BOOL": "?"}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}
MAX_HEADER = 16 * 2**20  # bytes of JSON: far more than any card text and config need


class FormatError(ValueError):
    """The file is not a well-formed safetensors file; the message says what is wrong."""


def encode(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """A whole file, tensors in the given order (byte-identical for the same input)."""
    header: dict = {"__metadata__": dict(metadata)}
    offset, blobs = 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dtype not in NAMES:
            raise TypeError(f"{name}: {a.dtype} has no safetensors dtype")
        blob = a.astype(dtype, copy=False).tobytes()
        header[name] = {"dtype": NAMES[dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the tensors start 8-byte aligned, as the reference writer does
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


class TensorFile:
    """An open safetensors file whose header has been read and checked; tensors load one by one."""

    def __init__(self, path: str | os.PathLike, max_header: int = MAX_HEADER):
        self.path = str(path)
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close() / the context manager
        try:
            self.size = os.fstat(self._f.fileno()).st_size
            self.metadata, self.entries = self._header(max_header)
        except BaseException:
            self._f.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._f.close()

    def _header(self, max_header: int):
        if self.size < 8:
            raise FormatError(f"{self.size} bytes: too short to be a safetensors file")
        (n,) = struct.unpack("<Q", self._f.read(8))
        if n > max_header:
            raise FormatError(f"its header claims {n:,} bytes, more than the {max_header:,} allowed: "
                              "not a safetensors file, or a damaged one")
        if 8 + n > self.size:
            raise FormatError(f"its header claims {n:,} bytes but the file has {self.size - 8:,} after the length: "
                              "truncated, or not a safetensors file")
        try:
            header = json.loads(self._f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise FormatError("its header is not JSON: not a safetensors file") from None
        if not isinstance(header, dict):
            raise FormatError("its header is not a JSON object: not a safetensors file")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise FormatError("its __metadata__ is not a table of strings")
        self.data_start = 8 + n
        entries = {name: self._entry(name, e) for name, e in header.items()}
        spans = sorted((e[2], e[3], name) for name, e in entries.items())
        at = 0
        for begin, end, name in spans:
            if begin != at:
                raise FormatError(f"tensor {name} starts at byte {begin} of the data, expected {at}: "
                                  "tensors overlap or leave a gap")
            at = end
        if self.data_start + at != self.size:
            have = self.size - self.data_start
            raise FormatError(f"the tensors need {at:,} bytes of data but the file has {have:,}: "
                              + ("truncated" if self.data_start + at > self.size else "bytes left over"))
        return metadata, entries

    def _entry(self, name: str, e) -> tuple[np.dtype, tuple[int, ...], int, int]:
        if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= e.keys():
            raise FormatError(f"tensor {name}: its entry needs dtype, shape and data_offsets")
        dtype, shape, offsets = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in DTYPES:
            raise FormatError(f"tensor {name}: dtype {str(dtype)[:20]!r} is not one cardgen reads "
                              f"({', '.join(DTYPES)})")
        if not (isinstance(shape, list) and len(shape) <= 8 and all(_count(d) for d in shape)):
            raise FormatError(f"tensor {name}: shape {str(shape)[:60]} is not a list of sizes")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(d) for d in offsets)
                and offsets[0] <= offsets[1]):
            raise FormatError(f"tensor {name}: data_offsets {str(offsets)[:60]} is not [begin, end]")
        dt = np.dtype(DTYPES[dtype])
        if math.prod(shape) * dt.itemsize != offsets[1] - offsets[0]:
            raise FormatError(f"tensor {name}: shape {tuple(shape)} of {dtype} needs "
                              f"{math.prod(shape) * dt.itemsize:,} bytes, its offsets span {offsets[1] - offsets[0]:,}")
        return dt, tuple(shape), offsets[0], offsets[1]

    def dtype(self, name: str) -> np.dtype:
        return self.entries[name][0]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name][1]

    def tensor(self, name: str) -> np.ndarray:
        """The tensor's bytes read from disk, as a writable array in native byte order."""
        dt, shape, begin, end = self.entries[name]
        self._f.seek(self.data_start + begin)
        buf = bytearray(end - begin)  # one allocation of exactly the declared size, filled in place
        if self._f.readinto(buf) != len(buf):
            raise FormatError(f"tensor {name}: the file ended early (it changed while being read?)")
        a = np.frombuffer(buf, dtype=dt).reshape(shape)
        return a if dt.isnative else a.astype(dt.newbyteorder("="))


def _count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**63
