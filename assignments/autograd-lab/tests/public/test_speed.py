"""Part speed (public): vectorised matmul, a long chain, a deep chain of diamonds.

Each program is timed on your ``autograd.py`` and on the staff's reference solution, in two
sandboxes under the same limits, interleaved round by round; the median ratio is judged
against the limits in ``assignment.yaml`` (``speed:``), and the rounds stop as soon as the
verdict is clear (the test's output says how many ran). The chain and diamond tests also time
``backward()`` on its own (a second request after the graph is built) and judge the worse of
that ratio and the whole run's. Every timed run's results are checked
(against the reference's on the same fresh draws; in ``grader check``, the program's own draws
against torch.autograd), so a fast wrong answer earns nothing. A run that takes longer
than a few seconds (the reference needs milliseconds) fails at once as too slow.
"""

import pytest

from grader.testkit import Program, SpeedMeasurement, measure_speed

pytestmark = pytest.mark.part("speed")

MATMUL_LIMIT_S = 3.0     # the reference needs ~10 ms; a Python loop over elements needs minutes
CHAIN_LIMIT_S = 10.0     # the reference needs ~0.1 s for 10,000 ops
DIAMOND_LIMIT_S = 5.0    # the reference needs ~10 ms; enumerating paths needs ~2**depth steps


def matmul_program(seed: int, n: int) -> Program:
    """``(A @ B * C).sum()`` at n x n, backward into A and B."""
    p = Program(f"matmul forward and backward at {n}x{n}", seed=seed)
    A = p.randn("A", (n, n), requires_grad=True)
    B = p.randn("B", (n, n), requires_grad=True)
    C = p.randn("C", (n, n))
    loss = ((A @ B) * C).sum().named("loss")
    p.backward(loss)
    p.snapshot("grads of A and B", [loss, A, B])
    return p


def chain_program(seed: int, n_ops: int) -> Program:
    """``n_ops`` ops in a chain: y = y * 1.0001, then y = y + 0.001, alternately (one loop step)."""
    p = Program(f"backward through a chain of {n_ops} ops", seed=seed)
    x = p.randn("x", (4, 4), requires_grad=True)
    y = p.repeat(n_ops // 2, x, lambda y: y * 1.0001 + 0.001)
    loss = y.sum().named("loss")
    p.backward(loss)
    p.snapshot("x.grad after backward through the chain", [x])
    return p


def diamond_program(seed: int, depth: int) -> Program:
    """``depth`` diamonds in a row: y feeds two branches that join again (2**depth paths).

    Where y > -1 the branches' slopes add up to 1, so x.grad stays of order 1.
    """
    p = Program(f"backward through a chain of {depth} diamonds", seed=seed)
    x = p.randn("x", (8,), requires_grad=True)
    y = p.repeat(depth, x, lambda y: y * 0.6 + (y + 1).relu() * 0.4)
    loss = y.sum().named("loss")
    p.backward(loss)
    p.snapshot("x.grad after backward through the diamonds", [x])
    return p


def timed(lab, reference_lab, torch_ref, assignment, record_property, program: Program, slow_limit_s: float,
          factor: float, split_backward: bool = False) -> SpeedMeasurement:
    """``measure_speed`` with the assignment's rounds, stopping once the verdict against ``factor`` is
    clear; the measurement (rounds used included) goes into the test's output. ``split_backward``
    also times ``backward()`` apart from building the graph, and judges the worse of the two ratios."""
    m = measure_speed(lab, reference_lab, torch_ref, program, rounds=assignment.config.speed.rounds,
                      slow_limit_s=slow_limit_s, limit=factor, split_backward=split_backward)
    record_property("grader_note", f"{program.title}: {m.summary()}")
    return m


@pytest.mark.points(2)
def test_matmul_is_vectorised(lab, reference_lab, torch_ref, assignment, seed, record_property):
    """Forward and backward of @ at 256x256 within matmul_factor of the reference."""
    factor = assignment.config.speed.matmul_factor
    m = timed(lab, reference_lab, torch_ref, assignment, record_property, matmul_program(seed + 301, 256),
              MATMUL_LIMIT_S, factor)
    assert m.within(factor), (f"matmul forward+backward at 256x256 is more than {factor:g}x slower than the "
                               f"reference: {m.summary()}. Use @ on the arrays, no Python loops over elements.")


@pytest.mark.points(2)
def test_backward_through_a_chain_of_10000_ops(lab, reference_lab, torch_ref, assignment, seed, record_property):
    """No RecursionError on a 10,000-op chain (default recursion limit), within chain_factor."""
    factor = assignment.config.speed.chain_factor
    m = timed(lab, reference_lab, torch_ref, assignment, record_property, chain_program(seed + 302, 10_000),
              CHAIN_LIMIT_S, factor, split_backward=True)
    assert m.within(factor), (f"backward through a chain of 10,000 ops is more than {factor:g}x slower than the "
                               f"reference: {m.summary()}. Visit each node once, with O(1) membership tests "
                               f"(a set, not a list).")


@pytest.mark.points(1)
def test_backward_through_60_diamonds(lab, reference_lab, torch_ref, assignment, seed, record_property):
    """A chain of 60 diamonds (2**60 paths): backward must visit each node once."""
    factor = assignment.config.speed.diamond_factor
    m = timed(lab, reference_lab, torch_ref, assignment, record_property, diamond_program(seed + 303, 60),
              DIAMOND_LIMIT_S, factor, split_backward=True)
    assert m.within(factor), (f"backward through 60 diamonds is more than {factor:g}x slower than the "
                               f"reference: {m.summary()}. Process each node once, in reverse topological order.")
