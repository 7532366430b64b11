"""Times the reference solution side by side with its yardsticks, in one run, and prints ratios.

1. matmul forward+backward at 512x512 float64, ``(A @ B).sum().backward()``, vs the same three
   matmuls in raw NumPy (with the upstream gradient of ``sum`` made as NumPy would:
   ``np.ones_like(C)``) (target: at most 1.10x);
2. one training step of the lab's MLP (x 8x4, W1 4x16, W2 16x1) vs torch.autograd on CPU
   (target: faster, ratio below 1.0).

Rounds are interleaved (A, B, B, A, ...) and the median per-round time is compared, so a
noisy neighbour affects both sides alike; BLAS runs on one thread on both sides. Usage: python benchmarks/reference_speed.py [--rounds N]
"""

from __future__ import annotations

import os

# One BLAS thread on both sides: on a 2-core machine a multi-threaded matmul is at the mercy of any
# other process, which makes side-by-side ratios noisy. (Set before NumPy is imported.)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reference"))
import autograd as ref  # noqa: E402

torch.set_num_threads(1)


def best_of(fn: Callable[[], object], inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def interleaved(a: Callable[[], object], b: Callable[[], object], rounds: int, inner: int) -> tuple[float, float]:
    ta, tb = [], []
    for i in range(rounds):
        order = [(a, ta), (b, tb)] if i % 2 == 0 else [(b, tb), (a, ta)]
        for fn, out in order:
            out.append(best_of(fn, inner))
    return statistics.median(ta), statistics.median(tb)


def matmul_case(n: int = 512) -> tuple[Callable[[], object], Callable[[], object]]:
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    kept: list[np.ndarray] = []  # the gradients stay alive until the next step, as .grad does

    def numpy_three() -> object:
        C = A @ B
        G = np.ones_like(C)  # d sum(C) / dC: raw NumPy needs this upstream gradient too
        kept[:] = [G @ B.T, A.T @ G]
        return kept

    a, b = ref.Tensor(A, requires_grad=True), ref.Tensor(B, requires_grad=True)

    def reference() -> object:
        a.grad = b.grad = None
        (a @ b).sum().backward()
        return a.grad

    return reference, numpy_three


def mlp_case() -> tuple[Callable[[], object], Callable[[], object]]:
    rng = np.random.default_rng(1)
    x, W1, b1, W2, b2 = (rng.standard_normal(s) for s in ((8, 4), (4, 16), (16,), (16, 1), (1,)))
    params = [ref.Tensor(v, requires_grad=True) for v in (W1, b1, W2, b2)]
    xt = ref.Tensor(x)
    opt = ref.SGD(params, lr=1e-3)

    def reference() -> object:
        opt.zero_grad()
        P = params
        loss = ((xt @ P[0] + P[1]).relu() @ P[2] + P[3]).sum()
        loss.backward()
        opt.step()
        return loss

    tparams = [torch.tensor(v, requires_grad=True) for v in (W1, b1, W2, b2)]
    tx = torch.tensor(x)
    topt = torch.optim.SGD(tparams, lr=1e-3)

    def with_torch() -> object:
        topt.zero_grad()
        P = tparams
        loss = ((tx @ P[0] + P[1]).relu() @ P[2] + P[3]).sum()
        loss.backward()
        topt.step()
        return loss

    return reference, with_torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    ok = True
    ref_t, np_t = interleaved(*matmul_case(), rounds=args.rounds, inner=3)
    ratio = ref_t / np_t
    ok &= ratio <= 1.10
    print(f"matmul fwd+bwd 512x512: reference {ref_t * 1e3:.2f} ms, raw NumPy (3 matmuls) {np_t * 1e3:.2f} ms, "
          f"ratio {ratio:.3f}x (target <= 1.10x) {'OK' if ratio <= 1.10 else 'MISSED'}")
    ref_t, torch_t = interleaved(*mlp_case(), rounds=args.rounds, inner=300)
    ratio = ref_t / torch_t
    ok &= ratio < 1.0
    print(f"MLP training step (8x4 @ 4x16, 16x1): reference {ref_t * 1e6:.1f} us, torch.autograd {torch_t * 1e6:.1f} us, "
          f"ratio {ratio:.3f}x (target < 1.0x) {'OK' if ratio < 1.0 else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
