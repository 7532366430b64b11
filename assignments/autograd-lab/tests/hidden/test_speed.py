"""Part speed (hidden): matmul in an MLP-sized layer, chains (time and growth), deep diamonds.

Timed against the reference solution in a sandbox of the same kind, interleaved (see
``grader.testkit.measure_speed``); every timed run's answer is checked against the reference's on the same draws.
"""

import statistics

import numpy as np
import pytest

from grader.testkit import PASS_MARGIN, Program, SpeedMeasurement, measure_speed

pytestmark = pytest.mark.part("speed")

MATMUL_LIMIT_S = 4.0     # the reference needs ~50 ms here; a Python loop over elements, hours
CHAIN_LIMIT_S = 10.0     # the reference needs ~0.3 s for 10,000 ops
DIAMOND_LIMIT_S = 5.0    # the reference needs ~20 ms for 200 diamonds; path enumeration, 2**200 steps
GROWTH_SLACK = 2.0       # a 10x longer chain may take at most this times the reference's growth
GROWTH_PASS_MARGIN = 1.5  # a long-chain round this far below that is a clear pass: the limit is already a
                          # 2x slack over the short ratio (at least 1x), and quadratic growth is 10x


def layer_program(seed: int) -> Program:
    """Two matmul layers at MLP-like sizes: ``((X @ W1 + b1).relu() @ W2 * C).sum()``."""
    p = Program("matmul layers: (512x384 @ 384x384 + b).relu() @ 384x256", seed=seed)
    X = p.randn("X", (512, 384))
    W1 = p.randn("W1", (384, 384), requires_grad=True, scale=0.05)
    b1 = p.randn("b1", (384,), requires_grad=True)
    W2 = p.randn("W2", (384, 256), requires_grad=True, scale=0.05)
    C = p.randn("C", (512, 256))
    h = (X @ W1 + b1).relu().named("h")
    loss = ((h @ W2) * C).sum().named("loss")
    p.backward(loss)
    p.snapshot("grads of the layers", [loss, W1, b1, W2])
    return p


def chain_program(seed: int, n_ops: int) -> Program:
    """About ``n_ops`` ops in a chain: y * 0.9999, + b (a leaf used every third op), relu (one loop step)."""
    p = Program(f"backward through a chain of {n_ops} ops with a shared bias", seed=seed)
    start = (np.abs(np.random.default_rng((seed, n_ops)).standard_normal((3, 5))) + 1).round(3)
    x = p.tensor("x", start, requires_grad=True)         # positive, so relu lets every element through
    b = p.tensor("b", [0.001, 0.002, 0.0005, 0.0015, 0.0], requires_grad=True)
    y = p.repeat(n_ops // 3, x, lambda y: (y * 0.9999 + b).relu())
    loss = (y * y).sum().named("loss")
    p.backward(loss)
    p.snapshot("grads of x and b after backward through the chain", [x, b])
    return p


def diamond_program(seed: int, depth: int) -> Program:
    """``depth`` diamonds with a skip: y -> (y * 0.5, (y + 1).relu() * 0.75, y * -0.25) -> sum.

    Where y > -1 the three branches' slopes add up to 1, so x.grad stays of order 1.
    """
    p = Program(f"backward through a chain of {depth} diamonds with skips", seed=seed)
    x = p.randn("x", (4, 3), requires_grad=True)
    y = p.repeat(depth, x, lambda y: y * 0.5 + (y + 1).relu() * 0.75 + y * -0.25)
    loss = y.sum().named("loss")
    p.backward(loss)
    p.snapshot("x.grad after backward through the diamonds", [x])
    return p


def timed(lab, reference_lab, torch_ref, record_property, program: Program, rounds: int, slow_limit_s: float,
          factor: float | None = None, split_backward: bool = True,
          pass_margin: float = PASS_MARGIN) -> SpeedMeasurement:
    """``measure_speed``; with ``factor``, rounds stop once the verdict against it is clear. The
    measurement (rounds used included) goes into the test's output. ``split_backward`` also times
    ``backward()`` apart from building the graph and judges the worse of the two ratios."""
    m = measure_speed(lab, reference_lab, torch_ref, program, rounds=rounds, slow_limit_s=slow_limit_s,
                      limit=factor, split_backward=split_backward, pass_margin=pass_margin)
    record_property("grader_note", f"{program.title}: {m.summary()}")
    return m


def per_run(seconds: list[float], m: SpeedMeasurement) -> float:
    return statistics.median(seconds)  # each round's entry is already the time of one run


@pytest.mark.points(2.5)
def test_matmul_layers_are_vectorised(lab, reference_lab, torch_ref, assignment, seed, record_property):
    """Forward and backward of two MLP-sized matmul layers within matmul_factor of the reference."""
    factor = assignment.config.speed.matmul_factor
    m = timed(lab, reference_lab, torch_ref, record_property, layer_program(seed + 2301),
              assignment.config.speed.rounds, MATMUL_LIMIT_S, factor, split_backward=False)
    assert m.within(factor), (f"forward+backward of two matmul layers is more than {factor:g}x slower than the "
                               f"reference: {m.summary()}. Use @ on the arrays, no Python loops over elements.")


@pytest.mark.points(2.5)
def test_backward_through_a_long_chain_with_a_shared_leaf(lab, reference_lab, torch_ref, assignment, seed,
                                                          record_property):
    """10,000 ops, a bias used 3,333 times: no RecursionError, within chain_factor of the reference."""
    factor = assignment.config.speed.chain_factor
    m = timed(lab, reference_lab, torch_ref, record_property, chain_program(seed + 2302, 10_000),
              assignment.config.speed.rounds, CHAIN_LIMIT_S, factor)
    assert m.within(factor), (f"backward through a chain of 10,000 ops is more than {factor:g}x slower than the "
                               f"reference: {m.summary()}")


@pytest.mark.points(1.5)
def test_backward_time_grows_linearly_with_the_chain(lab, reference_lab, torch_ref, assignment, seed,
                                                      record_property):
    """A 10x longer chain may take about 10x longer, as for the reference, not 100x (quadratic).

    Judged on the two speed ratios (each interleaved with the reference, so immune to load that
    changes between the two measurements): going from 1,000 to 10,000 ops, the ratio to the
    reference may grow at most GROWTH_SLACK times. A short ratio below 1 counts as 1, so that
    a lucky fast short measurement does not make an honest submission look superlinear.
    """
    rounds = assignment.config.speed.rounds
    # the short chain must be within chain_factor too; its rounds stop once that is clear (a close
    # long ratio then gets more rounds: a fail near the limit always does)
    short = timed(lab, reference_lab, torch_ref, record_property, chain_program(seed + 2303, 1_000), rounds,
                  CHAIN_LIMIT_S, assignment.config.speed.chain_factor)
    # the long chain is the long-chain test's own (measured once, its rounds serve both tests); its rounds
    # stop once its ratio is clearly on one side of what the short one allows
    allowed = GROWTH_SLACK * max(short.ratio, 1.0) if short.ratio is not None else None
    long = timed(lab, reference_lab, torch_ref, record_property, chain_program(seed + 2302, 10_000), rounds,
                 CHAIN_LIMIT_S, allowed, pass_margin=GROWTH_PASS_MARGIN)
    if short.ratio is None or long.ratio is None:
        return   # no reference (recording torch's answers): the time limit of each run was the judge
    growth = per_run(long.lab_seconds, long) / per_run(short.lab_seconds, short)
    ref_growth = per_run(long.reference_seconds, long) / per_run(short.reference_seconds, short)
    assert long.ratio <= GROWTH_SLACK * max(short.ratio, 1.0), (
        f"from a chain of 1,000 ops to one of 10,000 your time grew {growth:.1f}x, the reference's "
        f"{ref_growth:.1f}x (linear time: about 10x; quadratic: about 100x). Look for a list used for "
        f"membership tests, or work repeated per node over the whole graph. "
        f"1,000 ops: {short.summary()}; 10,000 ops: {long.summary()}")


@pytest.mark.points(2.5)
def test_backward_through_200_diamonds(lab, reference_lab, torch_ref, assignment, seed, record_property):
    """200 diamonds with skips (3**200 paths): each node once, within diamond_factor of the reference."""
    factor = assignment.config.speed.diamond_factor
    m = timed(lab, reference_lab, torch_ref, record_property, diamond_program(seed + 2305, 200),
              assignment.config.speed.rounds, DIAMOND_LIMIT_S, factor)
    assert m.within(factor), (f"backward through 200 diamonds is more than {factor:g}x slower than the "
                               f"reference: {m.summary()}. Process each node once, in reverse topological order.")
