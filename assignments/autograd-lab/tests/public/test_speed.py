"""Part speed (public): vectorised matmul, a long chain, a deep chain of diamonds.

Each program is timed on your ``autograd.py`` and on the staff's reference solution, in two
sandboxes under the same limits, interleaved round by round; the median ratio is judged
against the limits in ``assignment.yaml`` (``speed:``). The timed run's results are checked
against torch.autograd too, so a fast wrong answer earns nothing. A run that takes longer
than a few seconds (the reference needs milliseconds) fails at once as too slow.
"""

import pytest

from grader.testkit import Program, SpeedMeasurement, measure_speed

pytestmark = pytest.mark.part("speed")

MATMUL_LIMIT_S = 3.0     # the reference needs ~10 ms; a Python loop over elements needs minutes
CHAIN_LIMIT_S = 10.0     # the reference needs ~0.2 s for 10,000 ops (most of it the test's interpreter)
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


def chain_program(seed: int, n_ops: int) -> tuple[Program, list[str]]:
    """``n_ops`` ops in a chain: y = y * 1.0001, then y = y + 0.001, alternately; and its script."""
    p = Program(f"backward through a chain of {n_ops} ops", seed=seed)
    x = p.randn("x", (4, 4), requires_grad=True)
    y = x
    for _ in range(n_ops // 2):
        y = y * 1.0001
        y = y + 0.001
    loss = y.sum().named("loss")
    p.backward(loss)
    p.snapshot("x.grad after backward through the chain", [x])
    return p, ["x = Tensor(randn(0, (4, 4)), requires_grad=True)",
               "y = x",
               f"for _ in range({n_ops // 2}):",
               "    y = y * 1.0001",
               "    y = y + 0.001",
               "loss = y.sum()",
               "loss.backward()"]


def diamond_program(seed: int, depth: int) -> tuple[Program, list[str]]:
    """``depth`` diamonds in a row: y feeds two branches that join again (2**depth paths).

    Where y > -1 the branches' slopes add up to 1, so x.grad stays of order 1.
    """
    p = Program(f"backward through a chain of {depth} diamonds", seed=seed)
    x = p.randn("x", (8,), requires_grad=True)
    y = x
    for _ in range(depth):
        a = y * 0.6
        b = (y + 1).relu() * 0.4
        y = a + b
    loss = y.sum().named("loss")
    p.backward(loss)
    p.snapshot("x.grad after backward through the diamonds", [x])
    return p, ["x = Tensor(randn(0, (8,)), requires_grad=True)",
               "y = x",
               f"for _ in range({depth}):",
               "    a = y * 0.6",
               "    b = (y + 1).relu() * 0.4",
               "    y = a + b",
               "loss = y.sum()",
               "loss.backward()"]


def timed(lab, reference_lab, torch_ref, assignment, program: Program, slow_limit_s: float,
          loop_script: list[str] | None = None) -> SpeedMeasurement:
    """``measure_speed`` with the assignment's rounds; a long program's wrong answer gets a short reproducer."""
    return measure_speed(lab, reference_lab, torch_ref, program, rounds=assignment.config.speed.rounds,
                         slow_limit_s=slow_limit_s, loop_script=loop_script)


@pytest.mark.points(2)
def test_matmul_is_vectorised(lab, reference_lab, torch_ref, assignment, seed):
    """Forward and backward of @ at 256x256 within matmul_factor of the reference."""
    factor = assignment.config.speed.matmul_factor
    m = timed(lab, reference_lab, torch_ref, assignment, matmul_program(seed + 301, 256), MATMUL_LIMIT_S)
    assert m.within(factor), (f"matmul forward+backward at 256x256 is more than {factor:g}x slower than the "
                               f"reference: {m.summary()}. Use @ on the arrays, no Python loops over elements.")


@pytest.mark.points(2)
def test_backward_through_a_chain_of_10000_ops(lab, reference_lab, torch_ref, assignment, seed):
    """No RecursionError on a 10,000-op chain (default recursion limit), within chain_factor."""
    factor = assignment.config.speed.chain_factor
    program, script = chain_program(seed + 302, 10_000)
    m = timed(lab, reference_lab, torch_ref, assignment, program, CHAIN_LIMIT_S, script)
    assert m.within(factor), (f"backward through a chain of 10,000 ops is more than {factor:g}x slower than the "
                               f"reference: {m.summary()}. Visit each node once, with O(1) membership tests "
                               f"(a set, not a list).")


@pytest.mark.points(1)
def test_backward_through_60_diamonds(lab, reference_lab, torch_ref, assignment, seed):
    """A chain of 60 diamonds (2**60 paths): backward must visit each node once."""
    factor = assignment.config.speed.diamond_factor
    program, script = diamond_program(seed + 303, 60)
    m = timed(lab, reference_lab, torch_ref, assignment, program, DIAMOND_LIMIT_S, script)
    assert m.within(factor), (f"backward through 60 diamonds is more than {factor:g}x slower than the "
                               f"reference: {m.summary()}. Process each node once, in reverse topological order.")
