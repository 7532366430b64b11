"""One .npy member's bytes to an array, checked: numeric dtypes only, a shape that fits, never a pickle.

Stdlib + NumPy only: the sandbox's frames and the host's expectations files both read arrays this
way. numpy's canonical header is parsed by a strict pattern; any other header goes to numpy's own
parser (versions 1.0 and 2.0 only), and the same checks apply to both.
"""

from __future__ import annotations

import io
import math
import re
from typing import BinaryIO

import numpy as np

NUMERIC_KINDS = "biufc"                 # bool, signed, unsigned, float, complex
_NPY_VERSIONS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class UnsafeArray(ValueError):
    """An .npy member that is malformed, not numeric (a pickle, an object array) or larger than its data."""


# The header ``np.lib.format.write_array`` writes for a numeric array, exactly (then space padding and
# a newline). Parsed here with this pattern; numpy's own parser compiles the header with
# ``ast.literal_eval``, ~0.1 ms an array, which was a fifth of a grade's host time.
_CANONICAL_NPY = re.compile(rb"\{'descr': '([<>|][biufc](?:1|2|4|8|16))', 'fortran_order': (False|True), "
                            rb"'shape': \(((?:[0-9]{1,12}, ?)*(?:[0-9]{1,12})?)\), \} *\n\Z")


def npy_array(raw: bytes, name: str = "member") -> np.ndarray:
    """The (writable) array of one .npy member's bytes, after checking its header: a numeric dtype and a
    shape that fits in the data. Never unpickles; a header numpy would not write goes to numpy's parser."""
    canonical = _CANONICAL_NPY.match(raw, 10, 10 + int.from_bytes(raw[8:10], "little")) \
        if raw[:8] == b"\x93NUMPY\x01\x00" and len(raw) >= 10 else None
    if canonical is None:
        member = io.BytesIO(raw)
        shape, fortran, dtype = _npy_header(member, name)
        offset = member.tell()
    else:
        dtype = np.dtype(canonical[1].decode("ascii"))
        fortran = canonical[2] == b"True"
        shape = tuple(int(n) for n in canonical[3].split(b",") if n.strip())
        offset = canonical.end()
    _check_dtype(dtype, name)
    count = math.prod(shape)
    if count * dtype.itemsize > len(raw) - offset:
        raise UnsafeArray(f"member {name!r} claims shape {shape} of {dtype}, larger than its data")
    flat = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).copy()
    return flat.reshape(shape, order="F" if fortran else "C")


def _npy_header(member: BinaryIO, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version not in _NPY_VERSIONS:
        raise UnsafeArray(f"member {name!r} uses .npy format version {version}")
    return _NPY_VERSIONS[version](member)


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype.hasobject:
        raise UnsafeArray(f"member {name!r} is an object array (a pickle); refused")
    if dtype.kind not in NUMERIC_KINDS:
        raise UnsafeArray(f"member {name!r} has non-numeric dtype {dtype}")
