"""Frames between the grader and a sandboxed worker: a JSON header plus named NumPy arrays.

One frame on the byte stream::

    prefix   16 bytes: MAGIC b"AGF1" | header length (uint32, big-endian) | payload length (uint64, big-endian)
    header   UTF-8 JSON; always an object
    payload  an uncompressed .npz archive (a zip of .npy members, what ``np.savez`` writes),
             or nothing at all (payload length 0) when the frame carries no arrays

Stdlib + NumPy only: this module runs inside the sandbox too. Whatever comes out of a sandbox
is hostile, so ``read_frame`` checks the sizes in the prefix before it allocates anything,
checks the zip directory and every .npy header before it builds an array from the bytes, and
NEVER unpickles: a pickle, an object array, or any non-numeric dtype is refused.
Every way a frame can be bad raises ``ProtocolError`` (a clean end of stream returns None).
The functions work on any binary file-like object (``read(n)``, ``write``, ``flush``):
a pipe, a socket wrapper, ``io.BytesIO``.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zipfile
from typing import Any, BinaryIO, Mapping

import numpy as np

from grader.programs.npy import NUMERIC_KINDS, UnsafeArray, npy_array

MAGIC = b"AGF1"
PREFIX = struct.Struct(">4sIQ")
MAX_HEADER_BYTES = 2**32 - 1            # what the uint32 length field can say
MAX_MEMBERS = 100_000                   # arrays in one frame
_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,128}\Z")
_ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip
_CHUNK = 1 << 20

Arrays = dict[str, np.ndarray]
Frame = tuple[dict[str, Any], Arrays]


class ProtocolError(Exception):
    """A frame is malformed, oversized or unsafe; the one error type of this module."""


# ---- writing ----


def encode_frame(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> bytes:
    """The bytes of one frame (prefix + header + payload)."""
    if not isinstance(header, Mapping):
        raise ProtocolError(f"a frame header must be a JSON object, not {type(header).__name__}")
    try:
        raw_header = json.dumps(dict(header), separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"the frame header is not JSON-serialisable: {exc}") from None
    payload = encode_arrays(arrays) if arrays else b""
    if len(raw_header) > MAX_HEADER_BYTES:
        raise ProtocolError(f"the frame header is too large ({len(raw_header)} bytes)")
    return PREFIX.pack(MAGIC, len(raw_header), len(payload)) + raw_header + payload


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An uncompressed .npz of ``arrays``, written member by member as ``np.savez`` does.

    Written here rather than by ``np.savez(buf, **arrays)`` because ``savez`` reserves the
    keyword names ``file`` and ``allow_pickle``; the bytes are the same.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in arrays.items():
            arr = _checked_array(key, value)
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)
    return buf.getvalue()


def _checked_array(key: Any, value: Any) -> np.ndarray:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ProtocolError(f"array name {key!r} is not 1-128 characters of [A-Za-z0-9_.-]")
    if not isinstance(value, np.ndarray):
        raise ProtocolError(f"array {key!r} is a {type(value).__name__}, not a numpy array")
    if value.dtype.hasobject or value.dtype.kind not in NUMERIC_KINDS:
        raise ProtocolError(f"array {key!r} has dtype {value.dtype}; only numeric arrays may cross")
    return value


def write_frame(stream: BinaryIO, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> None:
    """Write one frame to ``stream`` and flush it."""
    stream.write(encode_frame(header, arrays))
    flush = getattr(stream, "flush", None)
    if flush is not None:
        flush()


# ---- reading ----


REPLY_HEADER_BYTES = 1 << 20  # a reply's JSON header: evidence metadata is small; decoded JSON is ~25x its text


def read_frame(stream: BinaryIO, max_bytes: int, max_header_bytes: int | None = None) -> Frame | None:
    """Read one frame; None at a clean end of stream (no byte of a new frame).

    ``max_bytes`` caps header + payload and ``max_header_bytes`` the JSON header alone (the host reads
    replies with ``REPLY_HEADER_BYTES``: a small, deeply nested header costs far more once decoded);
    both are checked before anything is allocated.
    Exceptions raised by ``stream.read`` itself (a deadline, say) pass through unchanged.
    """
    prefix = _read_exact(stream, PREFIX.size, eof_ok=True)
    if prefix is None:
        return None
    magic, header_len, payload_len = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError(f"not a frame: bad magic {magic!r} (expected {MAGIC!r})")
    if header_len + payload_len > max_bytes:
        raise ProtocolError(f"frame of {header_len + payload_len} bytes exceeds the limit of {max_bytes} bytes")
    if max_header_bytes is not None and header_len > max_header_bytes:
        raise ProtocolError(f"frame header of {header_len} bytes exceeds the limit of {max_header_bytes} bytes")
    header = decode_header(_read_exact(stream, header_len))
    arrays = decode_arrays(_read_exact(stream, payload_len), max_bytes) if payload_len else {}
    return header, arrays


def decode_frame(data: bytes, max_bytes: int) -> Frame:
    """One frame from ``data``, which must hold exactly one frame."""
    stream = io.BytesIO(data)
    frame = read_frame(stream, max_bytes)
    if frame is None:
        raise ProtocolError("no frame: the data is empty")
    if stream.read(1):
        raise ProtocolError("trailing bytes after the frame")
    return frame


def _read_exact(stream: BinaryIO, n: int, eof_ok: bool = False) -> bytes | None:
    """Exactly ``n`` bytes; a short read is a truncated frame (None if ``eof_ok`` and nothing came)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(min(n - len(buf), _CHUNK))
        if not chunk:
            break
        buf += chunk
    if eof_ok and not buf:
        return None
    if len(buf) < n:
        raise ProtocolError(f"truncated frame: expected {n} bytes, got {len(buf)}")
    return bytes(buf)


def decode_header(raw: bytes) -> dict[str, Any]:
    """The JSON object of a header."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"the frame header is not valid UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"the frame header is a JSON {type(header).__name__}, not an object")
    return header


def decode_arrays(payload: bytes, max_bytes: int) -> Arrays:
    """The arrays of an .npz payload, after checking its directory and every member's .npy header."""
    if payload[:4] not in _ZIP_STARTS:
        raise ProtocolError("the frame payload is not an .npz archive")
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            infos = archive.infolist()
            _check_directory(infos, max_bytes)
            return {info.filename[:-4]: npy_array(archive.read(info), info.filename) for info in infos}
    except ProtocolError:
        raise
    except UnsafeArray as exc:
        raise ProtocolError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - zipfile and numpy raise many types on garbage
        raise ProtocolError(f"the .npz payload is malformed ({type(exc).__name__}: {str(exc)[:200]})") from None


def _check_directory(infos: list[zipfile.ZipInfo], max_bytes: int) -> None:
    """Names, count and declared sizes, from the zip's central directory alone."""
    if len(infos) > MAX_MEMBERS:
        raise ProtocolError(f"the .npz payload has {len(infos)} members (at most {MAX_MEMBERS})")
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise ProtocolError("the .npz payload has duplicate members")
    total = 0
    for info in infos:
        if not (info.filename.endswith(".npy") and _KEY.match(info.filename[:-4])):
            raise ProtocolError(f"unexpected member {info.filename[:100]!r} in the .npz payload")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ProtocolError(f"member {info.filename!r} is compressed; frames carry stored members only")
        total += info.file_size
        if info.file_size > max_bytes or total > max_bytes:
            raise ProtocolError(f"member {info.filename!r} declares {info.file_size} bytes, over the "
                                f"limit of {max_bytes} bytes")


