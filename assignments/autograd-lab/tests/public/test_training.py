"""Part training (public): SGD.step, SGD.zero_grad and a short training loop.

Each test writes a small tensor program; ``matches_torch`` runs it on your ``autograd.py`` and
on torch.autograd (``torch.optim.SGD``), and on a difference explains it and prints a script
that reproduces it.
"""

import numpy as np
import pytest

from grader.testkit import Program

pytestmark = pytest.mark.part("training")


@pytest.mark.points(2)
def test_sgd_step_updates_data_in_place(matches_torch, seed):
    """step() does p.data -= lr * p.grad on the same array, and leaves the grads as they are."""
    p = Program("SGD.step updates in place", seed=seed + 201)
    x = p.randn("x", (6, 3))
    W = p.randn("W", (3, 2), requires_grad=True)
    b = p.randn("b", (2,), requires_grad=True)
    opt = p.sgd([W, b], lr=0.1)
    p.keep(W, "W_data_before")
    p.keep(b, "b_data_before")
    loss = ((x @ W + b).relu() * 2).sum().named("loss")
    p.backward(loss)
    p.snapshot("before step", [W, b])
    opt.step()
    p.fact("W.data is the same array after step()", "shares_data_with_kept", W, kept="W_data_before")
    p.fact("b.data is the same array after step()", "shares_data_with_kept", b, kept="b_data_before")
    p.snapshot("after step: data moved by lr * grad, grads unchanged", [W, b])
    matches_torch(p)


@pytest.mark.points(3)
def test_training_loop_matches_torch(matches_torch, seed):
    """Six steps of zero_grad, forward, backward, step on the lab's MLP: the same loss as torch."""
    p = Program("training loop on the MLP", seed=seed + 202)
    x = p.randn("x", (8, 4))
    minus_targets = p.array(-np.random.default_rng((seed, 202)).standard_normal((8, 1)))
    W1 = p.randn("W1", (4, 16), requires_grad=True, scale=0.5)
    b1 = p.randn("b1", (16,), requires_grad=True, scale=0.1)
    W2 = p.randn("W2", (16, 1), requires_grad=True, scale=0.5)
    b2 = p.randn("b2", (1,), requires_grad=True, scale=0.1)
    params = [W1, b1, W2, b2]
    opt = p.sgd(params, lr=0.01)
    for step in range(6):
        opt.zero_grad()
        h = (x @ W1 + b1).relu().named(f"h_{step}")
        out = (h @ W2 + b2).named(f"out_{step}")
        d = (out + minus_targets).named(f"d_{step}")
        loss = (d * d).sum().named(f"loss_{step}")
        p.backward(loss)
        p.snapshot(f"step {step}: loss and grads", [loss, *params])
        opt.step()
        p.snapshot(f"step {step}: parameters after step()", params)
    matches_torch(p)


@pytest.mark.points(1.5)
def test_sgd_takes_a_generator_and_skips_params_without_grad(matches_torch, seed):
    """SGD(params) may get a generator (as from model.parameters()); step() leaves a grad-less param alone."""
    p = Program("SGD from a generator of params; step() with a param whose grad is None", seed=seed + 203)
    x = p.randn("x", (5, 3))
    W = p.randn("W", (3, 2), requires_grad=True)
    spare = p.randn("spare", (2, 2), requires_grad=True)    # not used by the loss: its grad stays None
    opt = p.sgd([W, spare], lr=0.1, as_generator=True)
    for step in range(2):
        opt.zero_grad()
        loss = (x @ W).relu().sum().named(f"loss_{step}")
        p.backward(loss)
        opt.step()
        p.snapshot(f"after step {step}: W moved, spare unchanged", [loss, W, spare])
    matches_torch(p)
