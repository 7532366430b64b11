"""Part "mlp" (hidden): the lab's MLP over more shapes and seeds, and its variants.

    h = (x @ W1 + b1).relu();  loss = (h @ W2 + b2).sum()

Also: integer-valued data with many pre-activations exactly 0, a non-uniform loss weighting,
a mean loss, x requiring grad, and a deeper three-layer network.
"""

from __future__ import annotations

import numpy as np
import pytest

from grader.testkit import Program

pytestmark = pytest.mark.part("mlp")


def layer(x, W, b, name: str, relu: bool = True) -> list:
    """``(x @ W + b)`` and its relu; returns the intermediates, the layer's output last."""
    xW = (x @ W).named(f"{name}_xW")
    pre = (xW + b).named(f"{name}_pre")
    return [xW, pre, pre.relu().named(name)] if relu else [xW, pre]


def mlp_leaves(p: Program, n: int, hidden: int, x_grad: bool = False) -> list:
    """x (n,4), W1 (4,hidden), b1 (hidden,), W2 (hidden,1), b2 (1,): seeded draws."""
    return [p.randn("x", (n, 4), requires_grad=x_grad),
            p.randn("W1", (4, hidden), requires_grad=True, scale=0.5),
            p.randn("b1", (hidden,), requires_grad=True, scale=0.1),
            p.randn("W2", (hidden, 1), requires_grad=True, scale=0.5),
            p.randn("b2", (1,), requires_grad=True, scale=0.1)]


def mlp_out(x, W1, b1, W2, b2) -> list:
    """The intermediates of the lab's MLP up to ``out = h @ W2 + b2``, ``out`` last."""
    first = layer(x, W1, b1, "h")
    return first + layer(first[-1], W2, b2, "out", relu=False)


SHAPES = [(33, 64), (33, 5), (1, 16), (8, 64)]


@pytest.mark.points(1)
@pytest.mark.parametrize("n, hidden", SHAPES, ids=[f"N{n}_H{h}" for n, h in SHAPES])
def test_mlp_matches_torch(matches_torch, seed, n, hidden):
    k = SHAPES.index((n, hidden))
    p = Program(f"MLP: x ({n},4) -> {hidden} relu units -> 1", seed=seed + 2000 + k)
    leaves = mlp_leaves(p, n, hidden)
    inner = mlp_out(*leaves)
    loss = inner[-1].sum().named("loss")
    p.backward(loss)
    p.snapshot("after backward", leaves + inner + [loss])
    matches_torch(p)


@pytest.mark.points(2)
def test_mlp_integer_valued_data_with_zero_preactivations(matches_torch, seed):
    """Small integers everywhere: many entries of x @ W1 + b1 are exactly 0."""
    rng = np.random.default_rng((seed, 2010))
    n, hidden = 12, 9
    x_arr = rng.integers(-2, 3, (n, 4)).astype(np.float64)
    w1 = rng.integers(-1, 2, (4, hidden)).astype(np.float64)
    b1_arr = rng.integers(-1, 2, hidden).astype(np.float64)
    assert np.count_nonzero(x_arr @ w1 + b1_arr == 0) >= 5, "the data must give zero pre-activations"
    p = Program(f"MLP with integer-valued data: x ({n},4), {hidden} units, many pre-activations 0",
                seed=seed + 2010)
    leaves = [p.tensor("x", x_arr), p.tensor("W1", w1, requires_grad=True),
              p.tensor("b1", b1_arr, requires_grad=True),
              p.randn("W2", (hidden, 1), requires_grad=True), p.randn("b2", (1,), requires_grad=True)]
    inner = mlp_out(*leaves)
    loss = inner[-1].sum().named("loss")
    p.backward(loss)
    p.snapshot("after backward", leaves + inner + [loss])
    matches_torch(p)


@pytest.mark.points(2)
def test_mlp_weighted_loss(matches_torch, seed):
    """loss = (out * w).sum() with w (N,1) a tensor that does not require grad."""
    p = Program("MLP with a weighted loss: (out * w).sum(), x (20,4), 12 units", seed=seed + 2020)
    leaves = mlp_leaves(p, 20, 12)
    w = p.randn("w", (20, 1))
    inner = mlp_out(*leaves)
    weighted = (inner[-1] * w).named("weighted")
    loss = weighted.sum().named("loss")
    p.backward(loss)
    p.snapshot("after backward", leaves + [w] + inner + [weighted, loss])
    matches_torch(p)


@pytest.mark.points(2)
def test_mlp_mean_loss_and_x_requires_grad(matches_torch, seed):
    """loss = out.sum() * (1 / N), and x requires grad (input gradients, as for saliency maps)."""
    n, hidden = 7, 10
    p = Program(f"MLP with x requiring grad and a mean loss: x ({n},4), {hidden} units", seed=seed + 2030)
    leaves = mlp_leaves(p, n, hidden, x_grad=True)
    inner = mlp_out(*leaves)
    total = inner[-1].sum().named("total")
    loss = (total * (1.0 / n)).named("loss")
    p.backward(loss)
    p.snapshot("after backward", leaves + inner + [total, loss])
    matches_torch(p)


@pytest.mark.points(2)
def test_mlp_x_requires_grad_weighted(matches_torch, seed):
    """x requires grad, the loss weights each output differently, 33 rows and 5 units."""
    p = Program("MLP with x requiring grad: x (33,4), 5 units, loss (out * w).sum()", seed=seed + 2040)
    leaves = mlp_leaves(p, 33, 5, x_grad=True)
    inner = mlp_out(*leaves)
    weighted = (inner[-1] * p.randn_array((33, 1))).named("weighted")
    loss = weighted.sum().named("loss")
    p.backward(loss)
    p.snapshot("after backward", leaves + inner + [weighted, loss])
    matches_torch(p)


DEEP_SHAPES = [(16, 32, 8), (5, 6, 11)]


@pytest.mark.points(1)
@pytest.mark.parametrize("n, h1, h2", DEEP_SHAPES, ids=[f"N{n}_H{a}_H{b}" for n, a, b in DEEP_SHAPES])
def test_three_layer_mlp(matches_torch, seed, n, h1, h2):
    k = DEEP_SHAPES.index((n, h1, h2))
    p = Program(f"3-layer MLP: x ({n},4) -> {h1} relu -> {h2} relu -> 1", seed=seed + 2050 + k)
    x = p.randn("x", (n, 4))
    W1 = p.randn("W1", (4, h1), requires_grad=True, scale=0.5)
    b1 = p.randn("b1", (h1,), requires_grad=True, scale=0.1)
    W2 = p.randn("W2", (h1, h2), requires_grad=True, scale=0.3)
    b2 = p.randn("b2", (h2,), requires_grad=True, scale=0.1)
    W3 = p.randn("W3", (h2, 1), requires_grad=True, scale=0.5)
    b3 = p.randn("b3", (1,), requires_grad=True, scale=0.1)
    first = layer(x, W1, b1, "h1")
    second = layer(first[-1], W2, b2, "h2")
    third = layer(second[-1], W3, b3, "out", relu=False)
    weighted = (third[-1] * p.randn_array((n, 1))).named("weighted")
    loss = weighted.sum().named("loss")
    p.backward(loss)
    p.snapshot("after backward", [x, W1, b1, W2, b2, W3, b3] + first + second + third + [weighted, loss])
    matches_torch(p)
