"""Part "ops" (hidden): each op's forward and backward, every kind of operand, against torch.

Other shapes and seeds than the public tests. Every program ends in a weighted sum, so the
upstream gradient of each op is non-uniform, and every tensor that requires grad is snapshot
(leaves and intermediates), as are leaves that do not (their grad must stay None).
"""

from __future__ import annotations

import numpy as np
import pytest

from grader.testkit import Program

pytestmark = pytest.mark.part("ops")


def weighted_sum(p: Program, y, shape: tuple[int, ...], name: str = "loss"):
    """``(y * w).sum()`` with a random constant ``w``: y's upstream gradient is ``w``, not ones."""
    terms = (y * p.randn_array(shape)).named(f"{name}_terms")
    return terms, terms.sum().named(name)


@pytest.mark.points(1)
def test_add_same_shape_and_array_constants(matches_torch, seed):
    p = Program("add: x (5,7) + y (5,7), + a float array (5,7), + an int array (7,)", seed=seed + 1001)
    x = p.randn("x", (5, 7), requires_grad=True)
    y = p.randn("y", (5, 7), requires_grad=True)
    s = (x + y).named("s")
    t = (s + p.randn_array((5, 7))).named("t")
    u = (t + p.array(np.array([3, -1, 0, 2, 5, -4, 1]))).named("u")
    terms, loss = weighted_sum(p, u, (5, 7))
    p.backward(loss)
    p.snapshot("after backward", [x, y, s, t, u, terms, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_mul_with_constants_and_leaves_without_grad(matches_torch, seed):
    p = Program("mul: x (5,7) * c (5,7) without grad, * a float array, y * x", seed=seed + 1002)
    x = p.randn("x", (5, 7), requires_grad=True)
    c = p.randn("c", (5, 7))
    y = p.randn("y", (5, 7), requires_grad=True)
    xc = (x * c).named("xc")
    xca = (xc * p.randn_array((5, 7))).named("xca")
    yx = (y * xca).named("yx")
    terms, loss = weighted_sum(p, yx, (5, 7))
    p.backward(loss)
    p.snapshot("after backward", [x, c, y, xc, xca, yx, terms, loss])
    matches_torch(p)


MATMUL_CASES = {
    "(5,3) @ (3,7), both require grad": ((5, 3), (3, 7), True, True),
    "(1,6) @ (6,2), only the right one requires grad": ((1, 6), (6, 2), False, True),
    "(9,4) @ (4,1), only the left one requires grad": ((9, 4), (4, 1), True, False),
}


@pytest.mark.points(1)
@pytest.mark.parametrize("case", list(MATMUL_CASES), ids=["both", "right_only", "left_only"])
def test_matmul(matches_torch, seed, case):
    a_shape, b_shape, a_grad, b_grad = MATMUL_CASES[case]
    k = list(MATMUL_CASES).index(case)
    p = Program(f"matmul: {case}, then @ a constant array", seed=seed + 1010 + k)
    A = p.randn("A", a_shape, requires_grad=a_grad)
    B = p.randn("B", b_shape, requires_grad=b_grad)
    AB = (A @ B).named("AB")
    ABC = (AB @ p.randn_array((b_shape[1], 3))).named("ABC")
    terms, loss = weighted_sum(p, ABC, (a_shape[0], 3))
    p.backward(loss)
    p.snapshot("after backward", [A, B, AB, ABC, terms, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_relu_at_exact_zeros_and_of_intermediates(matches_torch, seed):
    p = Program("relu: z with literal zeros; v + a constant that cancels to exactly 0", seed=seed + 1020)
    z = p.tensor("z", [[0.0, 1.0, -2.0], [-0.5, 0.0, 4.0], [0.0, 0.0, 2.5], [-1.0, 3.0, 0.0], [7.0, -3.0, 0.0]],
                 requires_grad=True)
    v = p.tensor("v", [[1.0, -2.0, 0.5, 3.0, -1.0, 0.0, 2.0]], requires_grad=True)
    rz = z.relu().named("rz")
    pre = (v + p.array(np.array([[-1.0, 2.0, 1.0, -3.0, 2.0, 0.0, -0.5]]))).named("pre")
    rpre = pre.relu().named("rpre")
    terms_z, loss_z = weighted_sum(p, rz, (5, 3), "loss_z")
    terms_v, loss_v = weighted_sum(p, rpre, (1, 7), "loss_v")
    loss = (loss_z + loss_v).named("loss")
    p.backward(loss)
    p.snapshot("after backward", [z, v, rz, pre, rpre, terms_z, loss_z, terms_v, loss_v, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_sum_shapes_and_sums_of_sums(matches_torch, seed):
    p = Program("sum: of (6,1), (2,) and () tensors, each of shape (); (a.sum() * 3 + y).sum()", seed=seed + 1030)
    a = p.randn("a", (6, 1), requires_grad=True)
    y = p.randn("y", (2,), requires_grad=True)
    s0 = p.randn("s0", (), requires_grad=True)
    sa = a.sum().named("sa")
    sa3 = (sa * 3).named("sa3")
    t = (sa3 + y).named("t")
    wt = (t * p.randn_array((2,))).named("wt")
    st = wt.sum().named("st")
    s0s = s0.sum().named("s0s")
    u = (st * s0s).named("u")
    ys = y.sum().named("ys")
    loss = (u * ys).named("loss")
    p.backward(loss)
    p.snapshot("after backward", [a, y, s0, sa, sa3, t, wt, st, s0s, u, ys, loss])
    matches_torch(p)


BROADCAST_CASES = {
    "row (H,)": [(5,)],
    "row (1,H)": [(1, 5)],
    "column (N,1)": [(6, 1)],
    "scalar ()": [()],
    "column (N,1) with row (1,H)": [(6, 1), (1, 5)],
}


@pytest.mark.points(0.6)
@pytest.mark.parametrize("case", list(BROADCAST_CASES), ids=["H", "1H", "N1", "scalar", "N1_1H"])
def test_broadcast_on_either_side(matches_torch, seed, case):
    """x (6,5) with a broadcast operand c: c on the right and on the left, of + and of *."""
    k = list(BROADCAST_CASES).index(case)
    p = Program(f"broadcasting: x (6,5) with a {case} operand, on either side of + and *", seed=seed + 1040 + k)
    x = p.randn("x", (6, 5), requires_grad=True)
    shapes = BROADCAST_CASES[case]
    c = p.randn("c", shapes[0], requires_grad=True)
    d = p.randn("d", shapes[-1], requires_grad=True) if len(shapes) > 1 else c
    right_add = (x + c).named("right_add")
    left_add = (c + x).named("left_add")
    right_mul = (x * d).named("right_mul")
    left_mul = (d * right_add).named("left_mul")
    prod = (left_add * right_mul).named("prod")
    y = (prod + left_mul).named("y")
    tensors = [x, c, d] if d is not c else [x, c]
    tensors += [right_add, left_add, right_mul, left_mul, prod]
    if len(shapes) > 1:
        cd = (c + d).named("cd")     # both operands broadcast: (6,1) + (1,5) -> (6,5)
        dc = (d * c).named("dc")
        cddc = (cd * dc).named("cddc")
        y2 = (cddc + y).named("y2")
        tensors += [cd, dc, cddc, y]
        y = y2
    terms, loss = weighted_sum(p, y, (6, 5))
    p.backward(loss)
    p.snapshot("after backward", tensors + [y, terms, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_python_numbers_on_either_side(matches_torch, seed):
    p = Program("numbers: 3 * x, x * -0.5, 4 + x, x + 1.25, 2.5 * (...) and a number as data", seed=seed + 1050)
    x = p.randn("x", (4, 9), requires_grad=True)
    s = p.tensor("s", 1.5, requires_grad=True)
    a = (3 * x).named("a")
    b = (x * -0.5).named("b")
    c = (4 + a).named("c")
    d = (b + 1.25).named("d")
    cd = (c * d).named("cd")
    e = (2.5 * cd).named("e")
    se = (s * e).named("se")
    f = (se + s).named("f")
    terms, loss = weighted_sum(p, f, (4, 9))
    p.backward(loss)
    p.snapshot("after backward", [x, s, a, b, c, d, cd, e, se, f, terms, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_integer_data_becomes_float64(matches_torch, seed):
    p = Program("integer data: an int list, an int ndarray and an int number as Tensor data", seed=seed + 1060)
    k = p.tensor("k", [[2, -1, 0], [1, 3, -2]], requires_grad=True)
    m = p.tensor("m", np.array([[1, 0, 2, -1], [-3, 1, 1, 0], [2, 2, -1, 1]], dtype=np.int64), requires_grad=True)
    n = p.tensor("n", 3, requires_grad=True)
    c = p.tensor("c", np.array([5, -2, 1, 4], dtype=np.int32))
    km = (k @ m).named("km")
    half = (km * 0.5).named("half")
    nc = (n * c).named("nc")
    y = (half + nc).named("y")
    shifted = (y + 0.25).named("shifted")
    r = shifted.relu().named("r")
    terms, loss = weighted_sum(p, r, (2, 4))
    p.backward(loss)
    p.snapshot("after backward", [k, m, n, c, km, half, nc, y, shifted, r, terms, loss])
    matches_torch(p)
