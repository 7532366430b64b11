"""Part graph (hidden): requires_grad, detach, no_grad, accumulation, errors of backward.

Every rule of DESIGN.md §2 about the graph, checked against torch.autograd on programs the
students have not seen (own seeds and shapes).
"""

import numpy as np
import pytest

from grader.testkit import Program

pytestmark = pytest.mark.part("graph")


@pytest.mark.points(2)
def test_requires_grad_with_numbers_arrays_and_constants(matches_torch, seed):
    """Numbers, arrays and tensors without requires_grad are constants, on either side of an op."""
    p = Program("requires_grad with constants on either side", seed=seed + 2001)
    x = p.randn("x", (6, 3), requires_grad=True)
    b = p.tensor("b", [1, -2, 3])                        # a leaf from an int list, no grad
    c = p.randn("c", (6, 3))
    w = p.tensor("w", 0.5, requires_grad=True)           # a scalar leaf that requires grad
    A = p.randn_array((6, 3))
    e1 = (2 * c).named("e1")                             # constants only
    e2 = (A + b + c * p.array(np.arange(3.0))).named("e2")   # an array on the left, then the right
    e3 = (p.array(np.full((6, 1), 0.25)) * e2).named("e3")
    e4 = (e3 @ p.array(np.eye(3)[:, :2])).named("e4")
    e5 = e4.relu().sum().named("e5")
    g1 = (1 + x).named("g1")                             # the tensor that requires grad on the right
    g2 = (A * g1).named("g2")
    g3 = (g2 + b).named("g3")
    g4 = (e1 * w).named("g4")                            # requires grad only through the scalar w
    g5 = (g3 * g4 + e3).relu().named("g5")
    loss = (g5.sum() + e5 * 0.1).named("loss")
    everything = [e1, e2, e3, e4, e5, g1, g2, g3, g4, g5, loss]
    p.snapshot("requires_grad of every result", everything)
    p.backward(loss)
    p.snapshot("after backward: grads only where requires_grad", [x, b, c, w, *everything])
    matches_torch(p)


@pytest.mark.points(2)
def test_detach_is_a_constant_sharing_data(matches_torch, seed):
    """A detached tensor is a constant: the path through it gives no gradient to its source."""
    p = Program("detach cuts the graph", seed=seed + 2002)
    x = p.randn("x", (7, 4), requires_grad=True)
    W = p.randn("W", (4, 5), requires_grad=True)
    h = (x @ W).relu().named("h")
    d = h.detach().named("d")
    dd = d.detach().named("dd")
    p.fact("d = h.detach() shares h's data", "shares_data", d, h)
    p.fact("dd = d.detach() shares h's data", "shares_data", dd, h)
    p.fact("d does not require grad", "requires_grad", d)
    loss = (d * h).sum().named("loss")                   # d/dh (d * h) = d: one path only
    p.snapshot("before backward", [h, d, dd, loss])
    p.backward(loss)
    p.snapshot("after backward: only the direct path", [x, W, h, d, dd, loss])
    g = (x * 3).named("g")                               # a new source, used only detached
    e = g.detach().named("e")
    V = p.randn("V", (7, 4), requires_grad=True)
    loss2 = (e * V).sum().named("loss2")
    p.zero_grad(x)
    p.backward(loss2)
    p.snapshot("after a backward through the detached path only", [x, g, e, V, loss2])
    matches_torch(p)


@pytest.mark.points(1)
def test_no_grad_nests_and_restores_the_previous_state(matches_torch, seed):
    """Leaving an inner no_grad() keeps grads off inside the outer one; leaving that turns them on."""
    p = Program("nested no_grad", seed=seed + 2003)
    x = p.randn("x", (5, 3), requires_grad=True)
    W = p.randn("W", (3, 3), requires_grad=True)
    with p.no_grad():
        a = (x @ W).named("a")
        with p.no_grad():
            b = (a * x).named("b")
            p.snapshot("inside both blocks", [a, b])
        c = (x + W.sum()).named("c")                     # back in the outer block only
        p.snapshot("inside the outer block, after the inner one", [a, b, c])
    y = (x @ W).named("y")
    z = (y * c + b).relu().named("z")
    loss = (z.sum() + (a * y).sum()).named("loss")
    p.snapshot("after both blocks", [y, z, loss])
    p.backward(loss)
    p.snapshot("after backward: no grads through a, b, c", [x, W, a, b, c, y, z, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_no_grad_is_restored_when_an_exception_leaves_it(matches_torch, seed):
    """An exception leaving no_grad() must still restore the previous state (try/finally)."""
    p = Program("no_grad restored after an exception", seed=seed + 2004)
    x = p.randn("x", (4, 4), requires_grad=True)
    with p.no_grad(raise_inside=True):
        a = (x * 2).named("a")
    b = (x * 2).named("b")                               # after the block: requires grad again
    p.snapshot("after an exception left no_grad()", [a, b])
    with p.no_grad():
        with p.no_grad(raise_inside=True):
            c = (x + 1).named("c")
        d = (x + 1).named("d")                           # still inside the outer block
        p.snapshot("inside the outer block after the inner one raised", [c, d])
    e = (b * d + x).relu().named("e")
    loss = e.sum().named("loss")
    p.snapshot("after the outer block", [e, loss])
    p.backward(loss)
    p.snapshot("after backward", [x, a, b, c, d, e, loss])
    matches_torch(p)


@pytest.mark.points(2)
def test_backward_without_requires_grad_raises(matches_torch, seed):
    """backward() on a tensor that does not require grad raises RuntimeError and changes nothing."""
    p = Program("backward on a tensor that does not require grad", seed=seed + 2005)
    x = p.randn("x", (3, 5), requires_grad=True)
    c = p.randn("c", (3, 5))
    with p.no_grad():
        s = (x * x).sum().named("s")
    p.backward(s, expect_error="backward() on a result computed inside no_grad()")
    t = (c * 2).sum().named("t")
    p.backward(t, expect_error="backward() on a sum of constants")
    d = x.detach().sum().named("d")
    p.backward(d, expect_error="backward() on a sum of a detached tensor")
    p.snapshot("after the failed backward calls", [x, c, s, t, d])
    loss = (x * c).sum().named("loss")
    p.backward(loss)
    p.snapshot("a backward that requires grad still works", [x, c, loss])
    matches_torch(p)


@pytest.mark.points(2)
def test_second_backward_on_the_same_graph_adds_again(matches_torch, seed):
    """A second backward() on one graph adds the same gradients to the leaves again."""
    p = Program("second backward on the same graph", seed=seed + 2006)
    x = p.randn("x", (6, 4), requires_grad=True)
    W1 = p.randn("W1", (4, 8), requires_grad=True)
    b1 = p.randn("b1", (8,), requires_grad=True)
    W2 = p.randn("W2", (8, 1), requires_grad=True)
    h = (x @ W1 + b1).relu().named("h")
    out = (h @ W2).named("out")
    loss = ((out * out).sum() + (h * 0.5).sum()).named("loss")
    p.backward(loss)
    p.snapshot("after the first backward", [x, W1, b1, W2, h, out])
    p.backward(loss)
    p.snapshot("after the second backward (twice the grads)", [x, W1, b1, W2])
    p.backward(loss)
    p.snapshot("after the third backward", [x, W1, b1, W2])
    p.zero_grad(W1)
    p.zero_grad(b1)
    p.backward(loss)
    p.snapshot("after zero_grad of W1, b1 and a fourth backward", [x, W1, b1, W2])
    matches_torch(p)


@pytest.mark.points(2)
def test_zero_grad_sets_none_and_accumulation_restarts(matches_torch, seed):
    """Separate passes accumulate into shared leaves; zero_grad() makes grad None, not zeros."""
    p = Program("accumulation across passes and zero_grad", seed=seed + 2007)
    x = p.randn("x", (5,), requires_grad=True)
    y = p.randn("y", (5,), requires_grad=True)
    loss1 = (x * y).sum().named("loss1")
    p.backward(loss1)
    loss2 = ((x + y).relu() * x).sum().named("loss2")
    p.backward(loss2)
    p.snapshot("after two passes", [x, y])
    p.zero_grad(x)
    p.zero_grad(y)
    p.snapshot("after zero_grad: grad is None", [x, y])
    loss3 = (x * x * 0.5).sum().named("loss3")
    p.backward(loss3)
    p.snapshot("after a pass that reaches only x", [x, y])
    loss4 = (y * 3 + x).sum().named("loss4")
    p.backward(loss4)
    p.snapshot("after a fourth pass", [x, y])
    matches_torch(p)
