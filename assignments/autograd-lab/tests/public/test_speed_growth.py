"""Part speed (public): backward's time grows linearly with the graph, not quadratically.

A chain 10x longer may take about 10x longer, as for the reference, not 100x. Both chains are
timed against the staff's reference solution (interleaved, see ``test_speed.py``), and the ratio
of the long chain may be at most GROWTH_SLACK times that of the short one. The long chain is
``test_speed.py``'s 10,000-op chain: measured once, its rounds serve both tests.
"""

import pytest

from grader.testkit import measure_speed

from .test_speed import CHAIN_LIMIT_S, chain_program

pytestmark = pytest.mark.part("speed")

GROWTH_SLACK = 2.0       # a 10x longer chain may take at most this times the reference's growth
GROWTH_PASS_MARGIN = 1.5  # a long-chain round this far below that is a clear pass: the limit is already a
                          # 2x slack over the short ratio (at least 1x), and quadratic growth is 10x


@pytest.mark.points(1)
def test_backward_time_grows_linearly(lab, reference_lab, torch_ref, assignment, seed, record_property):
    """From 1,000 to 10,000 ops your time may grow about as much as the reference's (linear), not 100x."""
    rounds = assignment.config.speed.rounds
    # rounds stop once each verdict is clear: the short chain's against chain_factor, the long one's
    # against what the short ratio allows (a ratio near its limit gets more rounds, never fewer)
    short = measure_speed(lab, reference_lab, torch_ref, chain_program(seed + 304, 1_000), rounds=rounds,
                          slow_limit_s=CHAIN_LIMIT_S, limit=assignment.config.speed.chain_factor,
                          split_backward=True)
    allowed = GROWTH_SLACK * max(short.ratio, 1.0) if short.ratio is not None else None
    long = measure_speed(lab, reference_lab, torch_ref, chain_program(seed + 302, 10_000), rounds=rounds,
                         slow_limit_s=CHAIN_LIMIT_S, limit=allowed, split_backward=True,
                         pass_margin=GROWTH_PASS_MARGIN)
    if short.ratio is None or long.ratio is None:
        return   # no reference here (a student bundle): the time limit of each run was the judge
    record_property("grader_note", f"1,000 ops: {short.summary()}; 10,000 ops: {long.summary()}")
    assert long.ratio <= GROWTH_SLACK * max(short.ratio, 1.0), (
        f"from a chain of 1,000 ops to one of 10,000 your time grew much more than the reference's "
        f"(linear time: about 10x; quadratic: about 100x). Look for a list used for membership tests, "
        f"or work repeated per node over the whole graph. 1,000 ops: {short.summary()}; "
        f"10,000 ops: {long.summary()}")
