"""Part graph (public): requires_grad, detach, no_grad and gradient accumulation.

Each test writes a small tensor program; ``matches_torch`` runs it on your ``autograd.py`` and
on torch.autograd, and on a difference explains it and prints a script that reproduces it.
The hidden tests check the same rules on other programs (DESIGN: handout.md, "graph").
"""

import pytest

from grader.testkit import Program

pytestmark = pytest.mark.part("graph")


@pytest.mark.points(1.5)
def test_requires_grad_follows_the_inputs(matches_torch, seed):
    """A result requires grad iff any input does; after backward, only those have a grad."""
    p = Program("requires_grad follows the inputs", seed=seed + 101)
    x = p.randn("x", (4, 3), requires_grad=True)
    c = p.randn("c", (4, 3))                   # a tensor that does not require grad
    W = p.randn("W", (3, 2))
    a = (x * c).named("a")                     # one input requires grad: a does
    k = (c + 2).named("k")                     # constants only: k does not
    r = k.relu().named("r")
    m = (c @ W).named("m")
    h = (a @ W).named("h")
    s = (h * 2 + m).named("s")
    u = (x * r).sum().named("u")
    loss = (s.relu().sum() + u).named("loss")
    p.snapshot("before backward", [a, k, r, m, h, s, u, loss])
    p.backward(loss)
    p.snapshot("after backward", [x, c, W, a, k, r, m, h, s, u, loss])
    matches_torch(p)


@pytest.mark.points(1.5)
def test_detach_shares_data_and_cuts_the_graph(matches_torch, seed):
    """detach() shares the data array, does not require grad, and lets no gradient through."""
    p = Program("detach shares data and cuts the graph", seed=seed + 102)
    x = p.randn("x", (5, 3), requires_grad=True)
    W = p.randn("W", (3, 2), requires_grad=True)
    V = p.randn("V", (5, 2), requires_grad=True)
    h = (x @ W).named("h")
    d = h.detach().named("d")
    p.fact("d = h.detach() shares h's data array", "shares_data", d, h)
    p.fact("d = h.detach() does not require grad", "requires_grad", d)
    xd = x.detach().named("xd")
    p.fact("xd = x.detach() shares the leaf x's data array", "shares_data", xd, x)
    loss = (d * V).sum().named("loss")         # reaches x and W only through d: no grad for them
    p.backward(loss)
    p.snapshot("after backward through the detached d", [x, W, V, h, d, xd, loss])
    matches_torch(p)


@pytest.mark.points(1.5)
def test_no_grad_records_no_graph_and_is_restored(matches_torch, seed):
    """Inside no_grad() results require no grad; after the block, results require grad again."""
    p = Program("no_grad records no graph", seed=seed + 103)
    x = p.randn("x", (4, 3), requires_grad=True)
    W = p.randn("W", (3, 2), requires_grad=True)
    with p.no_grad():
        z = (x @ W).named("z")
        zr = (z + 1).relu().named("zr")
        p.snapshot("inside no_grad", [z, zr])
    y = (x @ W).named("y")                     # after the block: requires grad again
    loss = (y * zr).sum().named("loss")        # zr is a constant here
    p.snapshot("after the block", [y, loss])
    p.backward(loss)
    p.snapshot("after backward", [x, W, z, zr, y, loss])
    matches_torch(p)


@pytest.mark.points(1.5)
def test_grads_accumulate_until_zero_grad(matches_torch, seed):
    """Backward passes add into the leaves' grads (also twice on one graph); zero_grad() sets None."""
    p = Program("gradients accumulate until zero_grad", seed=seed + 104)
    x = p.randn("x", (3, 4), requires_grad=True)
    W = p.randn("W", (4, 2), requires_grad=True)
    loss1 = (x @ W).relu().sum().named("loss1")
    p.backward(loss1)
    p.snapshot("after the first pass", [x, W])
    y = (x @ W).named("y")
    loss2 = (y * y).sum().named("loss2")
    p.backward(loss2)
    p.snapshot("after the second pass (grads added)", [x, W])
    p.backward(loss2)                          # the same graph again: the same grads added again
    p.snapshot("after a second backward of loss2", [x, W])
    p.zero_grad(W)
    p.snapshot("after W.zero_grad()", [x, W])
    loss3 = (x * 3).sum() + (W * W).sum()
    p.backward(loss3)
    p.snapshot("after the third pass (W restarted, x still adding)", [x, W])
    matches_torch(p)


@pytest.mark.points(2)
def test_no_grad_nests_and_is_restored_after_an_exception(matches_torch, seed):
    """no_grad() restores the state it found: after a nested block, and when an exception leaves it."""
    p = Program("nested no_grad, and no_grad left by an exception", seed=seed + 105)
    x = p.randn("x", (3, 4), requires_grad=True)
    c = p.randn("c", (3, 4))
    with p.no_grad():
        with p.no_grad():
            a = (x * 3).named("a")
        b = (x + a).named("b")                     # still inside the outer block: no grad
        p.snapshot("inside the outer block, after the inner one", [a, b])
    with p.no_grad(raise_inside=True):
        r = (x * x).named("r")                     # an exception leaves this block
    y = (x * b + r).named("y")                     # after both: requires grad again
    cd = c.detach().named("cd")                    # detach of a tensor that does not require grad
    p.fact("cd = c.detach() shares c's data array", "shares_data", cd, c)
    loss = (y * cd).sum().named("loss")
    p.snapshot("after the blocks", [y, cd, loss])
    p.backward(loss)
    p.snapshot("after backward: no grad through a, b, r", [x, c, a, b, r, y, cd, loss])
    matches_torch(p)
