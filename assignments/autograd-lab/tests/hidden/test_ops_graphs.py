"""Part "ops" (hidden): gradients through graphs, grads' ownership, inputs, backward's errors.

Tensors used several times, shared subgraphs and skip connections whose paths differ in
length (a breadth-first or per-path backward gets them wrong), grads that must be owned and
writable arrays, ops that must not modify their inputs, and backward()'s RuntimeErrors.
"""

from __future__ import annotations

import numpy as np
import pytest

from grader.testkit import Program, weighted_sum

pytestmark = pytest.mark.part("ops")



@pytest.mark.points(1)
def test_tensor_used_several_times(matches_torch, seed):
    p = Program("reuse: x * x, x + x, ((x @ W) @ V) * x, (hx + u) + u", seed=seed + 1101)
    x = p.randn("x", (4, 6), requires_grad=True)
    W = p.randn("W", (6, 2), requires_grad=True)
    V = p.randn("V", (2, 6), requires_grad=True)
    u = p.randn("u", (4, 6), requires_grad=True)
    xx = (x * x).named("xx")
    x2 = (x + x).named("x2")
    xW = (x @ W).named("xW")
    h = (xW @ V).named("h")
    hx = (h * x).named("hx")
    hxu = (hx + u).named("hxu")
    hxuu = (hxu + u).named("hxuu")
    xxx2 = (xx * x2).named("xxx2")
    y = (xxx2 + hxuu).named("y")
    terms, loss = weighted_sum(p, y, (4, 6))
    p.backward(loss)
    p.snapshot("after backward", [x, W, V, u, xx, x2, xxx2, xW, h, hx, hxu, hxuu, y, terms, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_shared_subgraph_with_paths_of_different_length(matches_torch, seed):
    p = Program("diamonds: h = x @ W feeds relu, * c and a skip; they rejoin twice", seed=seed + 1102)
    x = p.randn("x", (5, 3), requires_grad=True)
    W = p.randn("W", (3, 4), requires_grad=True)
    c = p.randn("c", (1, 4), requires_grad=True)
    h = (x @ W).named("h")
    r = h.relu().named("r")
    hc = (h * c).named("hc")
    rhc = (r * hc).named("rhc")
    m = (rhc + h).named("m")
    mr = m.relu().named("mr")
    n = (mr + r).named("n")
    terms, loss = weighted_sum(p, n, (5, 4))
    p.backward(loss)
    p.snapshot("after backward", [x, W, c, h, r, hc, rhc, m, mr, n, terms, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_residual_connection(matches_torch, seed):
    p = Program("residual: y = relu(relu(x @ W1) @ W2) + x", seed=seed + 1103)
    x = p.randn("x", (5, 6), requires_grad=True)
    W1 = p.randn("W1", (6, 4), requires_grad=True)
    W2 = p.randn("W2", (4, 6), requires_grad=True)
    a = (x @ W1).named("a")
    ra = a.relu().named("ra")
    b = (ra @ W2).named("b")
    rb = b.relu().named("rb")
    y = (rb + x).named("y")
    terms, loss = weighted_sum(p, y, (5, 6))
    p.backward(loss)
    p.snapshot("after backward", [x, W1, W2, a, ra, b, rb, y, terms, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_tensor_reused_at_several_depths(matches_torch, seed):
    p = Program("depths: x enters at four depths, a at two", seed=seed + 1104)
    x = p.randn("x", (4, 7), requires_grad=True)
    u = p.randn("u", (4, 7), requires_grad=True)
    v = p.randn("v", (1, 7), requires_grad=True)
    xu = (x * u).named("xu")
    a = xu.relu().named("a")
    ax = (a + x).named("ax")
    b = (ax * v).named("b")
    rb = b.relu().named("rb")
    rbx = (rb + x).named("rbx")
    c = (rbx * a).named("c")
    d = (c + x).named("d")
    terms, loss = weighted_sum(p, d, (4, 7))
    p.backward(loss)
    p.snapshot("after backward", [x, u, v, xu, a, ax, b, rb, rbx, c, d, terms, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_grads_are_owned_and_writable(matches_torch, seed):
    p = Program("grads: y = a + b; z = y + c; e.sum(); each grad its own writable array", seed=seed + 1105)
    a = p.randn("a", (5, 4), requires_grad=True)
    b = p.randn("b", (5, 4), requires_grad=True)
    c = p.randn("c", (5, 4), requires_grad=True)
    e = p.randn("e", (3, 2), requires_grad=True)
    y = (a + b).named("y")
    z = (y + c).named("z")
    terms, loss_z = weighted_sum(p, z, (5, 4), "loss_z")
    h = (e * 2).named("h")
    hs = h.sum().named("hs")
    es = e.sum().named("es")
    partial = (loss_z + hs).named("partial")
    loss = (partial + es).named("loss")
    p.backward(loss)
    p.snapshot("after backward", [a, b, c, e, y, z, terms, loss_z, h, hs, es, partial, loss])
    p.fact("no two tensors share a grad array", "grads_distinct",
           a, b, c, e, y, z, terms, loss_z, h, hs, es, partial, loss)
    p.fact("e.grad (from sum's backward) is writable", "grad_writable", e)
    p.fact("h.grad (from sum's backward) is writable", "grad_writable", h)
    p.fact("y.grad (from add's backward) is writable", "grad_writable", y)
    matches_torch(p)


@pytest.mark.points(1)
def test_ops_leave_their_inputs_unchanged(matches_torch, seed):
    p = Program("inputs: relu, + and * must not write into their operands' arrays", seed=seed + 1106)
    x = p.randn("x", (3, 8), requires_grad=True)
    c = p.tensor("c", np.array([[-1.0, 2.0, -3.0, 0.5, 0.0, -0.25, 4.0, -2.0]]))
    rx = x.relu().named("rx")
    p.snapshot("after rx = x.relu()", [x, rx])
    rc = c.relu().named("rc")
    p.snapshot("after rc = c.relu()", [c, rc])
    xa = (x + p.randn_array((3, 8))).named("xa")
    p.snapshot("after xa = x + array", [x, xa])
    xm = (x * p.randn_array((1, 8))).named("xm")
    p.snapshot("after xm = x * array", [x, xm])
    rxx = (rx * x).named("rxx")
    rcxa = (rc * xa).named("rcxa")
    xmc = (xm * c).named("xmc")
    part = (rxx + rcxa).named("part")
    y = (part + xmc).named("y")
    terms, loss = weighted_sum(p, y, (3, 8))
    p.backward(loss)
    p.snapshot("after backward", [x, c, rx, rc, xa, xm, rxx, rcxa, xmc, part, y, terms, loss])
    matches_torch(p)


@pytest.mark.points(1)
def test_backward_without_grad_raises_runtime_error(matches_torch, seed):
    p = Program("backward() on tensors that do not require grad raises RuntimeError", seed=seed + 1107)
    c = p.randn("c", (2, 5))
    k = p.tensor("k", 4.0)
    s = (c * 3 + 1).sum().named("s")
    p.backward(s, expect_error="backward() on a sum of constants")
    ks = (k * 2).named("ks")
    p.backward(ks, expect_error="backward() on a () tensor that does not require grad")
    p.snapshot("after the failed backward() calls", [c, k, s, ks])
    matches_torch(p)


@pytest.mark.points(1)
def test_backward_needs_exactly_one_element(matches_torch, seed):
    p = Program("backward() on a (6, 1) or (3,) tensor raises RuntimeError", seed=seed + 1108)
    x = p.randn("x", (6, 2), requires_grad=True)
    W = p.randn("W", (2, 1), requires_grad=True)
    v = p.randn("v", (3,), requires_grad=True)
    xW = (x @ W).named("xW")
    p.backward(xW, expect_error="backward() on a (6, 1) tensor")
    v2 = (v * 2).named("v2")
    p.backward(v2, expect_error="backward() on a (3,) tensor")
    matches_torch(p)

    q = Program("backward() on a (1, 1) tensor works like on a scalar", seed=seed + 1109)
    r = q.randn("r", (1, 3), requires_grad=True)
    M = q.randn("M", (3, 1), requires_grad=True)
    o = (r @ M).named("o")
    o2 = (o * 3).named("o2")
    q.backward(o2)
    q.snapshot("after backward", [r, M, o, o2])
    matches_torch(q)
