"""The speed machinery: the loop step, the sequential decision, split timing, stored expectations.

Real components throughout: the reference and torch in-process, the local sandbox for the
worker's build/resume requests, the checked-in expectations against a fresh torch run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from grader.assignment import find_assignment
from grader.grading.executors import ExpectedTorch, TorchExecutor, start_executor, trusted_executor
from grader.grading.expectations_build import differences, record
from grader.programs.compare import Mismatch, assert_same
from grader.programs.expectations import Expectations, ExpectationsError, program_digest
from grader.programs.interpreter import split_point
from grader.programs.program import Program
from grader.programs.render import render_program
from grader.testkit import measure_speed, verdict_is_clear

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reference():
    return trusted_executor(ROOT / "reference")


@pytest.fixture(scope="module")
def torch_exec():
    return TorchExecutor()


def chain(n: int, unrolled: bool, seed: int = 5) -> Program:
    p = Program("chain", seed=seed)
    x = p.randn("x", (3, 2), requires_grad=True)
    b = p.randn("b", (2,), requires_grad=True)
    if unrolled:
        y = x
        for _ in range(n):
            y = (y * 0.99 + b).relu()
    else:
        y = p.repeat(n, x, lambda y: (y * 0.99 + b).relu())
    loss = (y * y).sum().named("loss")
    p.backward(loss)
    p.snapshot("grads", [x, b, y, loss])
    return p


# ---- the loop step ----


def test_a_loop_computes_what_the_unrolled_program_does(reference, torch_exec) -> None:
    looped, unrolled = chain(50, unrolled=False), chain(50, unrolled=True)
    assert len(looped.to_wire()[0]["steps"]) < 10 < len(unrolled.to_wire()[0]["steps"])
    for executor in (reference, torch_exec):
        a, b = executor.run(looped), executor.run(unrolled)
        for name in ("x", "b", "loss"):
            np.testing.assert_allclose(a.snapshots["grads"][name].grad, b.snapshots["grads"][name].grad)
        np.testing.assert_allclose(a.snapshots["grads"]["loss"].data, b.snapshots["grads"]["loss"].data)
    assert_same(looped, torch_exec.run(looped), reference.run(looped))


def test_a_loop_renders_as_a_for_loop_that_runs(tmp_path: Path) -> None:
    script = render_program(chain(40, unrolled=False))
    assert "for _ in range(40):" in script and len(script.splitlines()) < 25
    (tmp_path / "autograd.py").write_text((ROOT / "reference" / "autograd.py").read_text())
    (tmp_path / "reproduce.py").write_text(script)
    done = subprocess.run([sys.executable, "reproduce.py"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "no difference found" in done.stdout, done.stderr


def test_an_error_inside_a_loop_names_the_body_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    source = (ROOT / "reference" / "autograd.py").read_text()
    (broken / "autograd.py").write_text(source.replace("    def relu(self) -> Tensor:\n",
                                                        "    def relu(self) -> Tensor:\n        raise ValueError('boom')\n"))
    lab = trusted_executor(broken)
    program = chain(30, unrolled=False)
    with pytest.raises(Mismatch) as info:
        assert_same(program, TorchExecutor().run(program), lab.run(program))
    text = str(info.value)
    assert "ValueError: boom" in text and ".relu()" in text.split("Reproducer")[0]
    assert "for _ in range(30):" in text


def test_repeat_rejects_bodies_it_cannot_loop() -> None:
    p = Program("bad", seed=1)
    x = p.randn("x", (2,), requires_grad=True)
    with pytest.raises(ValueError):
        p.repeat(3, x, lambda y: y)                   # returns the carry itself: nothing to repeat
    with pytest.raises(ValueError):
        p.repeat(-1, x, lambda y: y * 2)


# ---- the sequential decision ----


def test_verdict_is_clear_only_with_enough_consistent_rounds() -> None:
    assert not verdict_is_clear([], 4.0)
    assert verdict_is_clear([1.0], 40.0)                               # one round, far below the limit
    assert verdict_is_clear([150.0], 40.0)                             # one round, far above it
    assert verdict_is_clear([2.0], 4.0)                                # one round 2x below: a clear pass
    assert not verdict_is_clear([2.5], 4.0)                            # nearer: the t bound needs two rounds
    assert not verdict_is_clear([10.0], 4.0)                           # 2.5x above: a fail needs 3x
    assert verdict_is_clear([1.0, 1.9], 4.0)                           # both rounds 2x below the limit
    assert verdict_is_clear([13.0, 30.0], 4.0)                         # both 3x above it
    assert not verdict_is_clear([1.0, 2.5], 4.0)                       # closer: the t bound needs more rounds
    assert not verdict_is_clear([11.0, 30.0], 4.0)
    assert verdict_is_clear([1.0, 1.1, 0.95], 4.0)                     # far below the limit
    assert verdict_is_clear([40.0, 55.0, 47.0], 4.0)                   # far above it
    assert not verdict_is_clear([3.5, 4.4, 3.9], 4.0)                  # straddles it
    assert not verdict_is_clear([1.0, 1.0, 5.0], 4.0)                  # one round over: not clear


def test_a_clear_pass_stops_early_and_says_so(reference) -> None:
    program = chain(200, unrolled=False)
    m = measure_speed(reference, reference, TorchExecutor(), program, rounds=7, slow_limit_s=10, limit=50.0)
    assert m.within(50.0) and m.rounds < 7 and "verdict clear after" in m.summary()
    full = measure_speed(reference, reference, TorchExecutor(), chain(200, unrolled=False, seed=6), rounds=4,
                         slow_limit_s=10)
    assert full.rounds == 4 and "all 4 rounds" in full.summary()


class Counting:
    """An executor that counts the timed requests it passes on."""

    def __init__(self, executor) -> None:
        self.executor, self.timed = executor, 0

    def run(self, program):
        return self.executor.run(program)

    def time(self, program, repeats, timeout=None, lean=False):
        self.timed += 1
        return self.executor.time(program, repeats, timeout, lean)

    def time_split(self, program, split, timeout=None, lean=False):
        self.timed += 1
        return self.executor.time_split(program, split, timeout, lean)


class Seeing(Counting):
    """Counts, records the seeds it is timed on, and adds ``extra`` seconds to each timed run (so the
    repeats per round, chosen from the reference's first run, are what the test wants)."""

    def __init__(self, executor, extra: float = 0.0) -> None:
        super().__init__(executor)
        self.extra, self.seeds = extra, []

    def time_split(self, program, split, timeout=None, lean=False):
        self.seeds.append(program.seed)
        built, backward, evidence = super().time_split(program, split, timeout, lean)
        return built + self.extra, backward, evidence


@pytest.mark.parametrize("extra", [0.0, 1.0])
def test_the_answers_checked_do_not_depend_on_the_repeats(reference, extra: float) -> None:
    """Whatever the repeats per round (they follow the reference's speed) and however soon the verdict is
    clear, variant 0 is always the first run checked, then variants in order: a wrong answer that shows
    there fails on every machine."""
    program = chain(100, unrolled=False, seed=13)
    lab, ref = Seeing(reference, extra), Seeing(reference, extra)
    m = measure_speed(lab, ref, TorchExecutor(), program, rounds=2, slow_limit_s=10, limit=50.0,
                      split_backward=True)
    assert (m.repeats == 1) == (extra > 0)
    assert lab.seeds == ref.seeds == [program.variant(k).seed for k in range(len(lab.seeds))]
    assert len(lab.seeds) == (m.rounds if m.repeats == 1 else 1 + m.rounds * m.repeats)
    if m.repeats == 1:   # far below the limit: the first runs (variant 0) are the one round judged
        assert m.rounds == 1 and "verdict clear after 1 of" in m.summary()


def test_a_program_measured_again_continues_the_same_measurement(reference) -> None:
    """Two tests timing the same Program on the same pair of sandboxes share its rounds: the second
    adds rounds only when its own limit needs them; another submission's measurement is its own."""
    lab, ref = Counting(reference), Counting(reference)
    program = chain(300, unrolled=False, seed=11)
    first = measure_speed(lab, ref, TorchExecutor(), program, rounds=5, slow_limit_s=10, limit=50.0)
    runs = lab.timed
    again = measure_speed(lab, ref, TorchExecutor(), program, rounds=5, slow_limit_s=10, limit=50.0)
    assert lab.timed == runs and again.lab_seconds == first.lab_seconds   # clear already: no new runs
    longer = measure_speed(lab, ref, TorchExecutor(), program, rounds=6, slow_limit_s=10)  # every round
    assert longer.rounds == 6 and longer.lab_seconds[:first.rounds] == first.lab_seconds
    assert lab.timed == runs + (6 - first.rounds) * first.repeats and first.rounds < 6 and len(first.lab_seconds) == first.rounds
    other = Counting(reference)
    measure_speed(other, ref, TorchExecutor(), program, rounds=5, slow_limit_s=10, limit=50.0)
    assert other.timed >= 1     # a different submission: measured afresh (its own first runs at least)


def test_a_failed_measurement_fails_again_without_running(reference, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    source = (ROOT / "reference" / "autograd.py").read_text()
    (wrong / "autograd.py").write_text(source.replace("return (g * (self.data > 0),)", "return (g * 0.5,)", 1))
    lab = Counting(trusted_executor(wrong))
    program = chain(100, unrolled=False, seed=12)
    with pytest.raises(Mismatch, match="grads"):
        measure_speed(lab, reference, TorchExecutor(), program, rounds=5, slow_limit_s=10, limit=10.0)
    runs = lab.timed
    with pytest.raises(Mismatch, match="grads"):
        measure_speed(lab, reference, TorchExecutor(), program, rounds=5, slow_limit_s=10, limit=10.0)
    assert lab.timed == runs


def test_every_timed_answer_is_checked_against_the_reference(reference, tmp_path: Path) -> None:
    """A submission right on the Program's own draws but wrong on fresh ones fails in the rounds."""
    sneaky = tmp_path / "sneaky"
    sneaky.mkdir()
    source = (ROOT / "reference" / "autograd.py").read_text()
    calls = "_calls = [0]\n"
    patched = source.replace("    def relu(self) -> Tensor:\n",
                             "    def relu(self) -> Tensor:\n        _calls[0] += 1\n"
                             "        if _calls[0] > 400:\n            return Tensor._result(self.data * 0, (self,), "
                             "lambda g: (g * 0,))\n", 1)
    (sneaky / "autograd.py").write_text(patched + calls)
    program = chain(200, unrolled=False)
    with pytest.raises(Mismatch):
        measure_speed(trusted_executor(sneaky), reference, TorchExecutor(), program, rounds=5, slow_limit_s=10)


def test_split_timing_through_the_sandbox_gives_the_same_evidence(tmp_path: Path) -> None:
    asg = find_assignment("autograd-lab")
    lab = start_executor("local", ROOT / "reference", asg, "lab")
    try:
        program = chain(100, unrolled=False)
        split = split_point(program.steps)
        assert split is not None and program.steps[split]["op"] == "backward"
        built, backward, evidence = lab.time_split(program, split)
        assert built > 0 and backward > 0
        assert_same(program, TorchExecutor().run(program), evidence)
        _, whole = lab.time(program, 1)        # a plain request after a split one still works
        assert_same(program, evidence, whole)
    finally:
        lab.close()


def matmul(n: int, seed: int = 3) -> Program:
    p = Program("matmul", seed=seed)
    A = p.randn("A", (n, n), requires_grad=True)
    B = p.randn("B", (n, n), requires_grad=True, scale=0.5)
    C = p.tensor("C", np.arange(n * n, dtype=float).reshape(n, n) / (n * n))   # a literal: still shipped
    loss = ((A @ B) * C).sum().named("loss")
    p.backward(loss)
    p.snapshot("grads", [loss, A, B])
    return p


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_a_lean_timed_run_draws_its_inputs_in_the_worker_and_sends_back_only_the_answer(backend: str) -> None:
    """A timed request carries how to draw the random inputs, not their bytes, and its reply leaves the
    inputs out (no echo, no data of the leaves made from them); the grads are those of a full run."""
    asg = find_assignment("autograd-lab")
    lab = start_executor(backend, ROOT / "reference", asg, "lab")
    sent, replies = [], []
    request = lab.sandbox.request

    def spy(header, arrays, timeout):
        sent.append((header, dict(arrays)))
        reply = request(header, arrays, timeout)
        replies.append(reply[1])
        return reply

    lab.sandbox.request = spy
    try:
        program = matmul(64).variant(2)
        _, full = lab.time(program, 1)
        _, lean = lab.time(program, 1, lean=True)
        built, backward, lean_split = lab.time_split(program, split_point(program.steps), lean=True)
    finally:
        lab.close()
    header, arrays = sent[1]
    assert header["lean"] is True and set(arrays) == {"c2"}              # the literal only
    assert set(header["program"]["draws"]) == {"r0", "r1"}
    assert not [k for k in replies[1] if k.startswith("in_")] and any(k.startswith("in_") for k in replies[0])
    for evidence in (lean, lean_split):
        states = evidence.snapshots["grads"]
        assert states["A"].data is None and states["B"].data is None and states["loss"].data is not None
        assert states["A"].data_dtype == "float64"          # of a leaf's data, its dtype is still checked
        for name in ("A", "B"):
            np.testing.assert_array_equal(states[name].grad, full.snapshots["grads"][name].grad)
        assert evidence.inputs_unchanged == {}
    assert sent[2][0]["lean"] is True and "draws" in sent[2][0]["program"]   # the build request of the split run


def test_draws_in_the_worker_are_the_hosts_draws_and_bad_specs_are_refused() -> None:
    from grader.programs.draws import BadDraw, draw_arrays

    program = matmul(8).variant(5)
    header, _ = program.to_wire(draw_in_worker=True)
    drawn = draw_arrays(header["draws"])
    for key in ("r0", "r1"):
        np.testing.assert_array_equal(drawn[key], program.arrays[key])
    for bad in ({"r0": [1, 2, [10**5, 10**5], 1.0]}, {"r0": [1, 2, [3], float("nan")]}, {"r0": [-1, 0, [3], 1.0]},
                {"r0": [1, True, [3], 1.0]}, {"r0": "x"}, [1]):
        with pytest.raises(BadDraw):
            draw_arrays(bad)


def test_a_submission_that_fakes_the_drawn_inputs_fails_the_answer_check(reference, tmp_path: Path) -> None:
    """The worker draws a lean run's inputs in the submission's own process: a submission that replaces the
    draws (zeros: a trivial answer) computes on other inputs than the reference, and its answer is wrong."""
    sneaky = tmp_path / "sneaky"
    sneaky.mkdir()
    source = (ROOT / "reference" / "autograd.py").read_text(encoding="utf-8")
    (sneaky / "autograd.py").write_text(source + (
        "\nimport grader.programs.draws as _d\n"
        "_d.randn = lambda seed, draw, shape, scale=1.0: np.zeros(shape)\n"), encoding="utf-8")
    lab = start_executor("local", sneaky, find_assignment("autograd-lab"), "lab")
    try:
        assert lab.import_error is None
        with pytest.raises(Mismatch):
            measure_speed(lab, reference, TorchExecutor(), matmul(32), rounds=3, slow_limit_s=10, limit=4.0)
    finally:
        lab.close()


# ---- stored expectations ----


def test_expectations_round_trip_deterministically(tmp_path: Path, torch_exec) -> None:
    store = Expectations({"seed": 5})
    programs = [chain(20, unrolled=False, seed=s) for s in (1, 2)]
    for p in programs:
        store.add(p, torch_exec.run(p))
    store.save(tmp_path / "a", "public")
    store.save(tmp_path / "b", "public")
    for suffix in (".json", ".npz"):
        assert (tmp_path / "a" / f"public{suffix}").read_bytes() == (tmp_path / "b" / f"public{suffix}").read_bytes()
    loaded = Expectations.load(tmp_path / "a", "public")
    for p in programs:
        assert_same(p, torch_exec.run(p), loaded.get(p))
    assert loaded.get(chain(20, unrolled=False, seed=3)) is None
    assert program_digest(programs[0]) != program_digest(programs[0].variant(1))


def test_a_pickle_in_the_npz_is_refused(tmp_path: Path, torch_exec) -> None:
    store = Expectations()
    p = chain(5, unrolled=False)
    store.add(p, torch_exec.run(p))
    store.save(tmp_path, "public")
    digest = program_digest(p)
    np.savez(tmp_path / "public.npz", **{f"{digest}/a0": np.array([object()], dtype=object)})
    loaded = Expectations.load(tmp_path, "public")     # the index loads; arrays are read on use
    with pytest.raises(ExpectationsError):
        loaded.get(p)


def test_stored_answers_are_used_and_a_miss_goes_to_live_torch(tmp_path: Path, torch_exec) -> None:
    store = Expectations()
    stored, other = chain(5, unrolled=False, seed=1), chain(5, unrolled=False, seed=2)
    store.add(stored, torch_exec.run(stored))
    oracle = ExpectedTorch([store])
    oracle.run(stored)
    assert (oracle.hits, oracle.misses) == (1, 0)
    assert_same(other, torch_exec.run(other), oracle.run(other))
    assert (oracle.hits, oracle.misses) == (1, 1)


def test_grader_check_at_the_default_seed_imports_no_torch() -> None:
    """torch blocked outright (``sys.modules['torch'] = None``): the full public suite still passes."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "from grader.cli import main\n"
            "rc = main(['check', 'reference'])\n"
            "print('RESULT', rc, 'torch' in sys.modules and sys.modules['torch'] is not None)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "RESULT 0 False" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]


def test_another_seed_without_torch_is_a_usage_error_with_a_hint() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "from grader.cli import main\n"
            "sys.exit(main(['check', '--seed', '7', 'reference']))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert "grader: error: --seed 7 needs torch" in done.stderr and "hint:" in done.stderr
    assert "autograd-lab-grader[staff]" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_checked_in_expectations_match_a_fresh_torch_run(tmp_path: Path) -> None:
    """CI: the shipped file is what torch computes now, for every Program the suites ask about."""
    asg = find_assignment("autograd-lab")
    counts = record(asg, tmp_path)
    assert counts["public"] >= 10 and counts["hidden"] >= 10
    for name in counts:
        problems = differences(Expectations.load(asg.expectations_dir, name), Expectations.load(tmp_path, name))
        assert not problems, f"{name}: rebuild with `grader expectations build`:\n" + "\n".join(problems)
    index = json.loads((asg.expectations_dir / "public.json").read_text())
    assert index["seed"] == asg.config.seed and index["assignment"] == asg.name


# ---- the oracle's SGD ----


@given(lr=st.floats(1e-4, 1.0), steps=st.integers(1, 3), seed=st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_the_oracles_sgd_is_torchs_sgd(lr: float, steps: int, seed: int) -> None:
    """The oracle's plain SGD (torch's own costs 1.3 s on first use) updates and clears as torch.optim.SGD."""
    import torch

    from grader.programs.torch_oracle import PlainSGD

    rng = np.random.default_rng(seed)
    start = [rng.standard_normal((3, 2)), rng.standard_normal(2)]
    runs = []
    for make in (lambda ps: torch.optim.SGD(ps, lr=lr), lambda ps: PlainSGD((p for p in ps), lr=lr)):
        params = [torch.tensor(a, requires_grad=True) for a in start]
        opt = make(params)
        for _ in range(steps):
            ((params[0] * 2).sum() + (params[1] ** 2).sum()).backward()
            opt.step()
        grads_before = [p.grad.clone() for p in params]
        opt.zero_grad()
        runs.append(([p.detach().numpy().copy() for p in params], grads_before, [p.grad for p in params]))
    (torch_params, torch_grads, torch_after), (plain_params, plain_grads, plain_after) = runs
    for a, b in zip(torch_params + torch_grads, plain_params + plain_grads):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert torch_after == plain_after == [None, None]
    with pytest.raises(ValueError):
        PlainSGD([], lr=0.1)


def test_a_smaller_pass_margin_stops_a_pass_sooner_and_never_a_fail() -> None:
    assert not verdict_is_clear([1.2], 2.0) and verdict_is_clear([1.2], 2.0, pass_margin=1.5)
    assert not verdict_is_clear([4.0], 2.0, pass_margin=1.5)          # a fail still needs 3x
    assert verdict_is_clear([6.0], 2.0, pass_margin=1.5)


def test_a_run_frees_its_tensors_when_it_ends(reference) -> None:
    """No reference cycle through the interpreter: a submission's tensors die when the run ends, not at
    some later cyclic GC pass (a tape that drops entries from weakref callbacks saw them fire mid-backward)."""
    import gc
    import weakref

    from grader.programs.interpreter import start_program

    program = chain(20, unrolled=False)
    header, arrays = program.to_wire()
    gc.disable()
    try:
        interpreter = start_program(reference.adapter, arrays)
        interpreter.run(header["steps"])
        alive = [weakref.ref(t) for t in interpreter.env.values() if hasattr(t, "data")]
        del interpreter
        assert alive and all(ref() is None for ref in alive)
    finally:
        gc.enable()
