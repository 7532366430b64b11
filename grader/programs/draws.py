"""A Program's seeded random inputs, drawn the same way on the host and in a worker.

A timed run does not ship its random arrays (megabytes at matmul sizes, encoded, sent and
decoded inside the timed request): it sends how to draw them, ``[seed, draw, shape, scale]``,
and the worker draws them itself. The formula lives here alone, so both sides agree. Stdlib +
NumPy only: this module runs inside the sandbox too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MAX_DRAWN_ELEMENTS = 4_000_000   # per array: a timed Program's inputs are MLP-sized, not more
MAX_DRAWN_ARRAYS = 64


class BadDraw(ValueError):
    """A draw spec that is not ``[seed, draw, shape, scale]`` of sane values."""


def randn(seed: int, draw: int, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """Standard-normal values from ``default_rng((seed, draw))``, times ``scale``."""
    arr = np.random.default_rng((seed, draw)).standard_normal(shape)
    return arr * scale if scale != 1.0 else arr


def draw_spec(seed: int, draw: int, shape: tuple[int, ...], scale: float) -> list[Any]:
    """The JSON form of one draw, as a Program's wire header carries it."""
    return [int(seed), int(draw), [int(n) for n in shape], float(scale)]


def draw_arrays(specs: Any) -> dict[str, np.ndarray]:
    """The arrays of a wire header's ``draws`` (``{key: [seed, draw, shape, scale]}``), checked first."""
    if not isinstance(specs, dict) or len(specs) > MAX_DRAWN_ARRAYS:
        raise BadDraw(f"draws must be an object of at most {MAX_DRAWN_ARRAYS} specs")
    out = {}
    for key, spec in specs.items():
        if not (isinstance(spec, list) and len(spec) == 4 and isinstance(spec[2], list)
                and all(_is_int(v) for v in (spec[0], spec[1], *spec[2]))
                and isinstance(spec[3], (int, float)) and not isinstance(spec[3], bool)
                and math.isfinite(spec[3]) and spec[0] >= 0 and spec[1] >= 0 and len(spec[2]) <= 8
                and all(n >= 0 for n in spec[2]) and math.prod(spec[2]) <= MAX_DRAWN_ELEMENTS):
            raise BadDraw(f"draw {str(key)[:40]!r} is not [seed, draw, shape, scale] of a sane size")
        out[str(key)] = randn(spec[0], spec[1], tuple(spec[2]), float(spec[3]))
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
