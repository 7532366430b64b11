"""Part "ops" (public): forward and backward of + * @ relu sum, against torch.autograd.

Each test writes a small tensor program; the grader runs it on your ``autograd.py`` and on
torch (float64, intermediates' grads kept) and compares every snapshot: ``.data``, ``.grad``
and ``requires_grad`` of each tensor listed. A failure names the tensor and the op that made
it, and ends with a reproducer script you can run next to your ``autograd.py``.

Run just this part with:  grader check --part ops
"""

from __future__ import annotations

import pytest

from grader.testkit import Program, weighted_sum

pytestmark = pytest.mark.part("ops")



@pytest.mark.points(1)
def test_add_bias_on_either_side(matches_torch, seed):
    p = Program("add: x (8,16) + bias (16,), then bias (16,) + y", seed=seed + 11)
    x = p.randn("x", (8, 16), requires_grad=True)
    b = p.randn("b", (16,), requires_grad=True)
    y = (x + b).named("y")
    z = (b + y).named("z")
    terms, loss = weighted_sum(p, z, (8, 16))
    p.backward(loss)
    p.snapshot("after backward", [x, b, y, z, terms, loss])
    p.fact("no two tensors share a grad array", "grads_distinct", x, b, y, z, terms, loss)
    matches_torch(p)


@pytest.mark.points(1)
def test_mul_elementwise_and_broadcast(matches_torch, seed):
    p = Program("mul: x (8,16) * y (8,16), * column c (8,1), row r (1,16) * ...", seed=seed + 12)
    x = p.randn("x", (8, 16), requires_grad=True)
    y = p.randn("y", (8, 16), requires_grad=True)
    c = p.randn("c", (8, 1), requires_grad=True)
    r = p.randn("r", (1, 16), requires_grad=True)
    xy = (x * y).named("xy")
    xyc = (xy * c).named("xyc")
    rxyc = (r * xyc).named("rxyc")
    terms, loss = weighted_sum(p, rxyc, (8, 16))
    p.backward(loss)
    p.snapshot("after backward", [x, y, c, r, xy, xyc, rxyc, terms, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_matmul(matches_torch, seed):
    p = Program("matmul: x (8,16) @ W (16,4)", seed=seed + 13)
    x = p.randn("x", (8, 16), requires_grad=True)
    W = p.randn("W", (16, 4), requires_grad=True)
    h = (x @ W).named("h")
    terms, loss = weighted_sum(p, h, (8, 4))
    p.backward(loss)
    p.snapshot("after backward", [x, W, h, terms, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_relu_including_exact_zeros(matches_torch, seed):
    p = Program("relu: of random x (8,16), and of z with entries exactly 0 (relu'(0) = 0)", seed=seed + 14)
    x = p.randn("x", (8, 16), requires_grad=True)
    z = p.tensor("z", [[0.0, -1.5, 2.0, 0.0], [3.0, 0.0, -0.25, 1.0]], requires_grad=True)
    rx = x.relu().named("rx")
    rz = z.relu().named("rz")
    p.snapshot("after the relus (their inputs must be unchanged)", [x, z, rx, rz])
    terms_x, loss_x = weighted_sum(p, rx, (8, 16), "loss_x")
    terms_z, loss_z = weighted_sum(p, rz, (2, 4), "loss_z")
    loss = (loss_x + loss_z).named("loss")
    p.backward(loss)
    p.snapshot("after backward", [x, z, rx, rz, terms_x, terms_z, loss_x, loss_z, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_sum_is_a_scalar_and_feeds_more_ops(matches_torch, seed):
    p = Program("sum: s = x.sum() has shape (); then (s * 3 + y) * w", seed=seed + 15)
    x = p.randn("x", (8, 16), requires_grad=True)
    y = p.randn("y", (4,), requires_grad=True)
    s = x.sum().named("s")
    s3 = (s * 3).named("s3")
    t = (s3 + y).named("t")
    terms, loss = weighted_sum(p, t, (4,))
    p.backward(loss)
    p.snapshot("after backward", [x, y, s, s3, t, terms, loss])
    p.fact("x.grad (from sum's backward) is a writable array", "grad_writable", x)
    matches_torch(p)


@pytest.mark.points(1)
def test_python_numbers_and_integer_data(matches_torch, seed):
    p = Program("numbers on either side (2 * x, x * 2, 3 + x, x + 2.5) and integer data", seed=seed + 16)
    x = p.randn("x", (3, 4), requires_grad=True)
    k = p.tensor("k", [[1, -2, 3, 0], [4, 5, -6, 7], [0, 1, 2, -3]], requires_grad=True)
    a = (2 * x).named("a")
    b = (x * 2).named("b")
    c = (3 + a).named("c")
    d = (b + 2.5).named("d")
    e = (c * k).named("e")
    k_half = (k * 0.5).named("k_half")
    f = (d + k_half).named("f")
    g = (e * f).named("g")
    terms, loss = weighted_sum(p, g, (3, 4))
    p.backward(loss)
    p.snapshot("after backward", [x, k, a, b, c, d, e, k_half, f, g, terms, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_tensor_reused_through_a_skip_connection(matches_torch, seed):
    p = Program("reuse: h = x @ W; y = (h.relu() * h + h) + h; plus x * x", seed=seed + 17)
    x = p.randn("x", (8, 16), requires_grad=True)
    W = p.randn("W", (16, 6), requires_grad=True)
    h = (x @ W).named("h")
    r = h.relu().named("r")
    rh = (r * h).named("rh")
    t = (rh + h).named("t")
    y = (t + h).named("y")
    xx = (x * x).named("xx")
    terms_y, loss_y = weighted_sum(p, y, (8, 6), "loss_y")
    terms_x, loss_x = weighted_sum(p, xx, (8, 16), "loss_x")
    loss = (loss_y + loss_x).named("loss")
    p.backward(loss)
    p.snapshot("after backward", [x, W, h, r, rh, t, y, xx, terms_y, loss_y, terms_x, loss_x, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_backward_errors_and_one_element_matrix(matches_torch, seed):
    p = Program("backward() must raise RuntimeError without grad or on many elements", seed=seed + 18)
    c = p.randn("c", (8, 4))
    s = (c * 2).sum().named("s")
    p.backward(s, expect_error="backward() on a tensor that does not require grad")
    x = p.randn("x", (8, 4), requires_grad=True)
    W = p.randn("W", (4, 1), requires_grad=True)
    y = (x @ W).named("y")
    p.backward(y, expect_error="backward() on a (8, 1) tensor")
    matches_torch(p)

    q = Program("backward() on a (1, 1) tensor works like on a scalar", seed=seed + 19)
    x1 = q.randn("x1", (1, 4), requires_grad=True)
    W1 = q.randn("W1", (4, 1), requires_grad=True)
    o = (x1 @ W1).named("o")
    q.backward(o)
    q.snapshot("after backward", [x1, W1, o])
    matches_torch(q)
