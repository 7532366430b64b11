"""Part speed (public): backward's time grows linearly with the graph, not quadratically.

A chain 10x longer may take about 10x longer, as for the reference, not 100x. Both chains are
timed against the staff's reference solution (interleaved, see ``test_speed.py``), and the ratio
of the long chain may be at most GROWTH_SLACK times that of the short one.
"""

import pytest

from grader.testkit import Program, measure_speed

pytestmark = pytest.mark.part("speed")

CHAIN_LIMIT_S = 10.0     # the reference needs ~0.3 s for 10,000 ops
GROWTH_SLACK = 2.0       # a 10x longer chain may take at most this times the reference's growth


def chain_program(seed: int, n_ops: int) -> tuple[Program, list[str]]:
    """``n_ops`` ops: y = (y * 0.999 + c), c a leaf used by every other op; and its script."""
    p = Program(f"backward through a chain of {n_ops} ops with a shared leaf", seed=seed)
    x = p.randn("x", (3, 3), requires_grad=True)
    c = p.randn("c", (3,), requires_grad=True, scale=0.001)
    y = x
    for _ in range(n_ops // 2):
        y = y * 0.999
        y = y + c
    loss = y.sum().named("loss")
    p.backward(loss)
    p.snapshot("grads of x and c after backward through the chain", [x, c])
    return p, ["x = Tensor(randn(0, (3, 3)), requires_grad=True)",
               "c = Tensor(randn(1, (3,)) * 0.001, requires_grad=True)",
               "y = x",
               f"for _ in range({n_ops // 2}):",
               "    y = y * 0.999",
               "    y = y + c",
               "loss = y.sum()",
               "loss.backward()"]


@pytest.mark.points(1)
def test_backward_time_grows_linearly(lab, reference_lab, torch_ref, assignment, seed):
    """From 1,000 to 10,000 ops your time may grow about as much as the reference's (linear), not 100x."""
    rounds = assignment.config.speed.rounds
    short_program, short_script = chain_program(seed + 304, 1_000)
    long_program, long_script = chain_program(seed + 305, 10_000)
    short = measure_speed(lab, reference_lab, torch_ref, short_program, rounds=3 * rounds,
                          slow_limit_s=CHAIN_LIMIT_S, loop_script=short_script)
    long = measure_speed(lab, reference_lab, torch_ref, long_program, rounds=rounds,
                         slow_limit_s=CHAIN_LIMIT_S, loop_script=long_script)
    if short.ratio is None or long.ratio is None:
        return   # no reference here (a student bundle): the time limit of each run was the judge
    assert long.ratio <= GROWTH_SLACK * max(short.ratio, 1.0), (
        f"from a chain of 1,000 ops to one of 10,000 your time grew much more than the reference's "
        f"(linear time: about 10x; quadratic: about 100x). Look for a list used for membership tests, "
        f"or work repeated per node over the whole graph. 1,000 ops: {short.summary()}; "
        f"10,000 ops: {long.summary()}")
