"""Part "mlp" (public): the lab's two-layer MLP, forward and backward, against torch.autograd.

    h = (x @ W1 + b1).relu()
    loss = (h @ W2 + b2).sum()

x (N, 4), W1 (4, H), b1 (H,), W2 (H, 1), b2 (1,). Every leaf and intermediate is compared
after ``loss.backward()``: data, grad and requires_grad.

Run just this part with:  grader check --part mlp
"""

from __future__ import annotations

import numpy as np
import pytest

from grader.testkit import Program

pytestmark = pytest.mark.part("mlp")


def mlp(p: Program, x, W1, b1, W2, b2) -> list:
    """The lab's MLP on the given leaves; returns every tensor to snapshot, loss last."""
    xW1 = (x @ W1).named("xW1")
    pre = (xW1 + b1).named("pre")
    h = pre.relu().named("h")
    hW2 = (h @ W2).named("hW2")
    out = (hW2 + b2).named("out")
    loss = out.sum().named("loss")
    p.backward(loss)
    return [x, W1, b1, W2, b2, xW1, pre, h, hW2, out, loss]


@pytest.mark.points(2)
@pytest.mark.parametrize("n, hidden", [(8, 16), (1, 5)], ids=["N8_H16", "N1_H5"])
def test_mlp_matches_torch(matches_torch, seed, n, hidden):
    p = Program(f"MLP: x ({n},4) -> {hidden} relu units -> 1", seed=seed + 21 + hidden)
    x = p.randn("x", (n, 4))
    W1 = p.randn("W1", (4, hidden), requires_grad=True, scale=0.5)
    b1 = p.randn("b1", (hidden,), requires_grad=True, scale=0.1)
    W2 = p.randn("W2", (hidden, 1), requires_grad=True, scale=0.5)
    b2 = p.randn("b2", (1,), requires_grad=True, scale=0.1)
    p.snapshot("after backward", mlp(p, x, W1, b1, W2, b2))
    matches_torch(p)


@pytest.mark.points(2)
def test_mlp_with_preactivations_exactly_zero(matches_torch, seed):
    """Units 1 and 4 have a zero column of W1 and a zero bias: their pre-activation is exactly 0."""
    rng = np.random.default_rng((seed, 31))
    w1 = rng.standard_normal((4, 6)).round(2)
    w1[:, [1, 4]] = 0.0
    bias = rng.standard_normal(6).round(2)
    bias[[1, 4]] = 0.0
    p = Program("MLP with zero pre-activations: relu'(0) = 0, as in torch", seed=seed + 31)
    x = p.randn("x", (8, 4))
    W1 = p.tensor("W1", w1, requires_grad=True)
    b1 = p.tensor("b1", bias, requires_grad=True)
    W2 = p.randn("W2", (6, 1), requires_grad=True)
    b2 = p.randn("b2", (1,), requires_grad=True)
    p.snapshot("after backward", mlp(p, x, W1, b1, W2, b2))
    matches_torch(p)
