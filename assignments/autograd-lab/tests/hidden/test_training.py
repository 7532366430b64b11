"""Part training (hidden): SGD.step and SGD.zero_grad exactly as torch.optim.SGD, and training loops.

Checked against torch.autograd + torch.optim.SGD on programs the students have not seen.
"""

import numpy as np
import pytest

from grader.testkit import Program

pytestmark = pytest.mark.part("training")


def _mlp_params(p: Program, n_in: int, hidden: int, n_out: int) -> list:
    return [p.randn("W1", (n_in, hidden), requires_grad=True, scale=0.5),
            p.randn("b1", (hidden,), requires_grad=True, scale=0.1),
            p.randn("W2", (hidden, n_out), requires_grad=True, scale=0.5),
            p.randn("b2", (n_out,), requires_grad=True, scale=0.1)]


@pytest.mark.points(2)
def test_sgd_step_is_exact_in_place_and_keeps_grads(matches_torch, seed):
    """Two steps without zero_grad: each moves data by exactly lr * grad, in place; grads stay."""
    p = Program("SGD.step: exact, in place, grads unchanged", seed=seed + 2101)
    x = p.randn("x", (5, 4))
    W = p.randn("W", (4, 3), requires_grad=True)
    b = p.randn("b", (1, 3), requires_grad=True)
    s = p.tensor("s", 1.5, requires_grad=True)           # a 0-d parameter
    opt = p.sgd([W, b, s], lr=0.37)
    for name, t in (("W", W), ("b", b), ("s", s)):
        p.keep(t, f"{name}_data_before")
    loss = ((x @ W + b) * s).relu().sum().named("loss")
    p.backward(loss)
    opt.step()
    p.snapshot("after the first step", [W, b, s])
    loss2 = ((x @ W) * (x @ W) + b * s).sum().named("loss2")
    p.backward(loss2)                                    # no zero_grad: grads accumulate
    opt.step()
    p.snapshot("after a second step on the accumulated grads", [W, b, s])
    for name, t in (("W", W), ("b", b), ("s", s)):
        p.fact(f"{name}.data is still the array it had before the steps", "shares_data_with_kept", t,
               kept=f"{name}_data_before")
        p.fact(f"{name} still requires grad after step()", "requires_grad", t)
    matches_torch(p)


@pytest.mark.points(1.5)
def test_sgd_step_records_no_graph(matches_torch, seed):
    """After step() the parameters are still leaves: a fresh forward+backward gives torch's grads."""
    p = Program("SGD.step records no graph", seed=seed + 2102)
    x = p.randn("x", (6, 3))
    W = p.randn("W", (3, 4), requires_grad=True)
    v = p.randn("v", (4,), requires_grad=True)
    opt = p.sgd([W, v], lr=0.05)
    loss = ((x @ W).relu() * v).sum().named("loss")
    p.backward(loss)
    opt.step()
    opt.zero_grad()
    loss2 = ((x @ W) * v).sum().named("loss2")
    p.snapshot("a result of the updated parameters", [loss2])
    p.backward(loss2)
    p.snapshot("grads of a fresh backward after step()", [W, v, loss2])
    opt.step()
    loss3 = (W * W).sum().named("loss3")
    p.backward(loss3)                                    # adds to loss2's grads
    p.snapshot("grads after another step and backward", [W, v])
    matches_torch(p)


@pytest.mark.points(1.5)
def test_sgd_zero_grad_sets_every_grad_to_none(matches_torch, seed):
    """opt.zero_grad() sets each of its parameters' grad to None, and touches no other tensor."""
    p = Program("SGD.zero_grad sets grads to None", seed=seed + 2103)
    x = p.randn("x", (4, 5))
    W1 = p.randn("W1", (5, 3), requires_grad=True)
    b1 = p.randn("b1", (3,), requires_grad=True)
    W2 = p.randn("W2", (3, 2), requires_grad=True)         # not in this optimizer
    opt = p.sgd([W1, b1], lr=0.1)
    loss = ((x @ W1 + b1).relu() @ W2).sum().named("loss")
    p.backward(loss)
    p.snapshot("after backward", [W1, b1, W2])
    opt.zero_grad()
    p.snapshot("after opt.zero_grad(): W1, b1 None, W2 untouched", [W1, b1, W2])
    p.backward(loss)
    p.snapshot("after another backward: W1, b1 restart", [W1, b1, W2])
    opt.zero_grad()
    opt.zero_grad()                                      # twice in a row is fine
    p.snapshot("after two zero_grad() calls", [W1, b1, W2])
    matches_torch(p)


@pytest.mark.points(0.75)
def test_sgd_step_skips_parameters_without_grad(matches_torch, seed):
    """A parameter whose grad is None (unused by the loss, or zeroed) is left as it is."""
    p = Program("SGD.step skips params whose grad is None", seed=seed + 2104)
    x = p.randn("x", (3, 4))
    W = p.randn("W", (4, 2), requires_grad=True)
    unused = p.randn("unused", (2,), requires_grad=True)
    opt = p.sgd([W, unused], lr=0.2)
    loss = (x @ W).relu().sum().named("loss")
    p.backward(loss)
    opt.step()
    p.snapshot("after step: unused has no grad and is unchanged", [W, unused])
    opt.zero_grad()
    opt.step()                                           # every grad is None: nothing moves
    p.snapshot("after step() with every grad None", [W, unused])
    matches_torch(p)


@pytest.mark.points(1.5)
def test_grads_are_zeroed_at_the_start_of_every_step(matches_torch, seed):
    """With opt.zero_grad() first in each step, each step's grads are that step's alone."""
    p = Program("zero_grad at the start of every step", seed=seed + 2105)
    x = p.randn("x", (10, 3))
    params = _mlp_params(p, 3, 6, 2)
    W1, b1, W2, b2 = params
    opt = p.sgd(params, lr=0.02)
    for step in range(5):
        opt.zero_grad()
        out = ((x @ W1 + b1).relu() @ W2 + b2).named(f"out_{step}")
        loss = (out * out).sum().named(f"loss_{step}")
        p.backward(loss)
        p.snapshot(f"step {step}: grads of this step only", params)
        opt.step()
    p.snapshot("parameters after five steps", params)
    matches_torch(p)


@pytest.mark.points(1.25)
def test_training_loop_on_the_mlp(matches_torch, seed):
    """Eight steps on the lab's MLP, squared error against targets: the loss falls as torch's does.

    The parameters reach SGD as a generator, as ``model.parameters()`` would hand them over.
    """
    p = Program("training loop on the MLP, eight steps", seed=seed + 2106)
    x = p.randn("x", (8, 4))
    minus_targets = p.array(-np.random.default_rng((seed, 2106)).standard_normal((8, 1)))
    params = _mlp_params(p, 4, 16, 1)
    W1, b1, W2, b2 = params
    opt = p.sgd(params, lr=0.02, as_generator=True)
    for step in range(8):
        opt.zero_grad()
        h = (x @ W1 + b1).relu().named(f"h_{step}")
        d = (h @ W2 + b2 + minus_targets).named(f"d_{step}")
        loss = (d * d).sum().named(f"loss_{step}")
        p.backward(loss)
        p.snapshot(f"step {step}: loss, hidden layer and grads", [loss, h, *params])
        opt.step()
    final = (((x @ W1 + b1).relu() @ W2 + b2 + minus_targets) * 1).named("final_residual")
    p.snapshot("after training", [final, *params])
    matches_torch(p)
