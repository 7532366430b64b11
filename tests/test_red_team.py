"""Red team: hostile submissions graded end to end, as a TA grades them.

Each case stores only its attack, ``tests/red_team/<name>/attack.py``; its entry in
``tests/red_team/catalog.yaml`` names its ``base`` (the reference, the template or a buggy variant
of ``tests/buggy``), what it does and what must hold when it is graded. The submission graded is
assembled at test time, in a temp folder: the base as it is today, the line
``# ==== red-team attack: <name> ====``, then the attack (so the honest part is never out of date).
What must hold:

- the grade finishes within its time bound and the report validates against the schema;
- the score is what the honest part alone earns, graded the same way (or no more than that,
  for attacks that break the tests they run in);
- the host is untouched: no file appears outside temp dirs (nor in the repository), no
  container and no sandbox process is left behind, the grader's memory stays bounded.

Every case runs on the Docker backend; the local backend also runs the cases it is meant to
withstand (it has no file-system or network isolation). Without a Docker engine the Docker
cases skip, unless ``GRADER_REQUIRE_DOCKER=1``: then they fail.

Cases whose catalog entry has ``weakness:`` fail today: the entry and the assertion message say
what breaks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from tests.buggy import variant_file
from grader.assignment import Assignment, find_assignment, load_assignment
from grader.report import STDOUT_LIMIT, Report, load_report, validate_report_json
from grader.grading.runner import GradeRequest, grade

ROOT = Path(__file__).resolve().parents[1]
RED_TEAM = ROOT / "tests" / "red_team"
CATALOG: list[dict[str, Any]] = yaml.safe_load((RED_TEAM / "catalog.yaml").read_text(encoding="utf-8"))
CASES = {case["name"]: case for case in CATALOG}
ATTACK_MARK = "# ==== red-team attack: {name} ===="
BASES = {"reference": ROOT / "reference" / "autograd.py", "template": ROOT / "student_template" / "autograd.py"}
BACKENDS = ("docker", "local")
FAST_TIMEOUTS = {"import_s": 5, "request_s": 3}
DEFAULT_MAX_HOST_MB = 512             # resident growth; cases that set max_host_mb are traced exactly
SETTLE_S = 10.0                        # how long leftovers get to disappear after a grade
FORK_BOMB_COMM = "rt-forkbomb"
PICKLE_MARKER = Path("/tmp/autograd-red-team-unpickled-marker")   # = RED_TEAM_MARKER in the pickle cases
EXTRAS = ("conftest.py", "sitecustomize.py", "usercustomize.py", "numpy.py", "grader/__init__.py", "grader/sandbox/protocol.py")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the host checks read /proc")


# ---- the catalog ----


def base_path(base: str) -> Path:
    kind, _, variant = base.partition("/")
    return variant_file(variant) if kind == "buggy" else BASES[base]


def honest_text(name: str) -> str:
    """The case's honest part: its base, as it is today."""
    return base_path(CASES[name]["base"]).read_text(encoding="utf-8")


def submission_text(name: str) -> str:
    """The case's submission: its base, the attack's mark line, then the attack."""
    attack = (RED_TEAM / name / "attack.py").read_text(encoding="utf-8")
    return honest_text(name).rstrip("\n") + "\n\n\n" + ATTACK_MARK.format(name=name) + "\n" + attack


@pytest.fixture(scope="session")
def red_team(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``red_team(name)``: a folder holding the case's assembled ``autograd.py`` (made once a session)."""
    made: dict[str, Path] = {}

    def submission(name: str) -> Path:
        if name not in made:
            folder = tmp_path_factory.mktemp(f"submission-{name}")
            (folder / "autograd.py").write_text(submission_text(name), encoding="utf-8")
            made[name] = folder
        return made[name]

    return submission


def expectations(case: dict[str, Any], backend: str) -> dict[str, Any]:
    """The case's expectations, with those of ``backend`` applied over the shared ones."""
    expect = {k: v for k, v in case["expect"].items() if k not in BACKENDS}
    expect.update(case["expect"].get(backend, {}))
    expect.setdefault("max_host_mb", DEFAULT_MAX_HOST_MB)
    return expect


def graded_params(predicate: Callable[[dict[str, Any]], bool] = lambda case: True) -> list[Any]:
    return [pytest.param(case["name"], backend, id=f"{case['name']}-{backend}",
                         marks=[pytest.mark.slow, *([pytest.mark.docker] if backend == "docker" else [])])
            for case in CATALOG if predicate(case) for backend in case["backends"]]


def test_catalog_lists_every_submission_once():
    folders = sorted(p.name for p in RED_TEAM.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    assert sorted(CASES) == folders
    assert len(CASES) == len(CATALOG)
    for case in CATALOG:
        assert {"name", "attack", "base", "backends", "grade", "expect"} <= set(case), case["name"]
        assert set(case["backends"]) <= set(BACKENDS), case["name"]
        assert "docker" in case["backends"] or not case["backends"], f"{case['name']}: Docker is what must pass"
        for backend in case["backends"]:
            if not case["grade"].get("speed_probe"):
                assert {"status", "within_s"} <= set(expectations(case, backend)), (case["name"], backend)


@pytest.mark.parametrize("name", sorted(CASES))
def test_submission_is_its_base_plus_an_attack(name):
    attack = (RED_TEAM / name / "attack.py").read_text(encoding="utf-8")
    assert sorted(p.name for p in (RED_TEAM / name).iterdir()) == ["attack.py"], f"tests/red_team/{name}/"
    assert attack.strip() or name in PREPARE, f"tests/red_team/{name}/attack.py is empty"   # shipped_extras: files
    assert honest_text(name).strip() not in attack, (
        f"tests/red_team/{name}/attack.py should hold the attack alone, not a copy of its base")
    text = submission_text(name)
    assert text.startswith(honest_text(name).rstrip("\n")) and text.endswith(attack)
    compile(text, f"{name}/autograd.py", "exec")


# ---- sandboxes ----


@pytest.fixture(scope="session")
def docker_client():
    """The engine and an up-to-date sandbox image; skip without them, fail if CI requires Docker."""
    from grader.errors import SandboxError
    from grader.sandbox import image as image_mod

    try:
        client = image_mod.docker_client()
        image_mod.ensure_image(client)
    except SandboxError as err:
        if os.environ.get("GRADER_REQUIRE_DOCKER") == "1":
            pytest.fail(f"GRADER_REQUIRE_DOCKER=1 but Docker is unusable: {err} ({err.hint})")
        pytest.skip(f"no Docker engine: {err}")
    return client


@pytest.fixture
def sandbox_backend(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``sandbox_backend(name)``: make sure the backend can run here (Docker: engine and image)."""
    def ready(backend: str) -> None:
        if backend == "docker":
            request.getfixturevalue("docker_client")
    return ready


@pytest.fixture(scope="session")
def assignments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Assignment]:
    """The real assignment, and a copy with short timeouts ("fast") for the hangs."""
    real = find_assignment("autograd-lab")
    return {"assignment": real,
            "fast": assignment_copy(real, tmp_path_factory.mktemp("fast"), timeouts=FAST_TIMEOUTS)}


def assignment_copy(real: Assignment, where: Path, timeouts: dict[str, float] | None = None,
                    suites: tuple[str, ...] | None = None) -> Assignment:
    """A copy of ``real`` (its reference by absolute path), with other timeouts or only the ``suites`` files."""
    def skip(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if n == "__pycache__"
                or (suites is not None and n.startswith("test_") and n not in suites)]

    root = where / real.root.name
    shutil.copytree(real.root, root, ignore=skip)
    raw = yaml.safe_load((real.root / "assignment.yaml").read_text(encoding="utf-8"))
    raw["reference"] = str(real.reference_dir)
    if timeouts:
        raw["timeouts"] = dict(timeouts)
    (root / "assignment.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_assignment(root)


# ---- the host, before and after ----


def git_status() -> set[str]:
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(done.stdout.splitlines()) if done.returncode == 0 else set()


# Names only the attacks use: other engineers may change the repository while the suite runs.
ARTIFACT_NAME = re.compile(r"red-team|results\.json|report\.json|unpickled|-ran$")


def artifact_candidates() -> list[Path]:
    """Host paths the attacks write to, or that would appear if a shipped extra or a pickle ran."""
    places = [ROOT, ROOT.parent, Path.home(), Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"),
              Path("/autograder"), Path("/autograder/results"), Path("/autograder/submission")]
    found = [place / name for place in places
             for name in ("results.json", "report.json", "red-team-forged.json", "red-team-fill.bin")]
    found += [Path("/autograder"), PICKLE_MARKER]
    for pattern in ("red-team-fill-*.bin", "autograd-red-team-*"):
        found += Path("/tmp").glob(pattern)
    return found


def new_artifacts(since: float) -> list[str]:
    """Candidates created or changed since ``since`` (pre-existing, untouched files are fine)."""
    changed = []
    for path in artifact_candidates():
        with contextlib.suppress(OSError):
            if path.lstat().st_mtime >= since - 1:
                changed.append(str(path))
    return sorted(set(changed))


def _proc_read(pid: str, what: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{what}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def sandbox_processes(container_ids: list[str], tokens: list[str]) -> list[str]:
    """Live processes of the given containers (by cgroup) or local sandboxes (by token), and fork bombs."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        stat = _proc_read(pid, "stat").rpartition(b")")[2].split()
        if not stat or stat[0] in (b"Z", b"X"):
            continue
        comm = _proc_read(pid, "comm").strip().decode(errors="replace")
        cgroup = _proc_read(pid, "cgroup").decode(errors="replace")
        environ = _proc_read(pid, "environ") if tokens else b""
        if (comm == FORK_BOMB_COMM or any(cid in cgroup for cid in container_ids)
                or any(token.encode() in environ for token in tokens)):
            found.append(f"{pid} ({comm})")
    return found


def my_containers(client: Any) -> list[str]:
    """Sandbox containers this process owns (the Docker backend labels them with host and pid)."""
    from grader.sandbox.docker_backend import OWNER_LABEL

    owner = f"{socket.gethostname()}:{os.getpid()}"
    return [c["Id"][:12] for c in client.api.containers(all=True, filters={"label": f"{OWNER_LABEL}={owner}"})]


@dataclass
class Recorder:
    """What a grade started: container ids (Docker) and sandbox tokens (local)."""

    containers: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def watching(self) -> Iterator[Recorder]:
        from grader.sandbox import docker_backend, local_backend

        create, spawn = docker_backend.create_container, local_backend.LocalSandbox._spawn

        def recorded_create(*args: Any, **kwargs: Any) -> str:
            container_id = create(*args, **kwargs)
            self.containers.append(container_id)
            return container_id

        def recorded_spawn(box: Any) -> None:
            spawn(box)
            self.tokens.append(box._token)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(docker_backend, "create_container", recorded_create)
            patch.setattr(local_backend.LocalSandbox, "_spawn", recorded_spawn)
            yield self


class PeakMemory:
    """How much the grader's memory grows during a grade.

    By default its resident size, sampled every 10 ms (coarse: memory freed by an earlier grade is
    reused without growing). With ``traced``, the peak of Python's own allocations (tracemalloc,
    which NumPy reports to as well): exact whatever ran before, and slower.
    """

    def __init__(self, traced: bool = False) -> None:
        self.traced = traced
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._traced_peak = 0.0

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakMemory:
        if self.traced:
            tracemalloc.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.traced:
            self._traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()

    @property
    def growth_mb(self) -> float:
        return self._traced_peak if self.traced else self.peak - self.start


@dataclass
class Outcome:
    report: Report
    seconds: float
    host_mb: float
    recorder: Recorder
    artifacts: list[str]
    repo_changes: list[str]
    leftovers: list[str]


def grade_case(submission: Path, backend: str, assignment: Assignment, parts: tuple[str, ...],
               visible_only: bool, docker_client: Any = None, trace_memory: bool = False) -> Outcome:
    """Grade as ``grader grade`` does, watching the host; the report is validated."""
    before, started = git_status(), time.time()
    recorder = Recorder()
    with recorder.watching(), PeakMemory(traced=trace_memory) as memory:
        clock = time.monotonic()
        report = grade(GradeRequest(assignment, submission, backend=backend, parts=parts,
                                    visible_only=visible_only)).report
        seconds = time.monotonic() - clock
    validate_report_json(report.to_jsonable())
    leftovers = _wait_for_leftovers(recorder, docker_client)
    changes = sorted(line for line in git_status() - before if ARTIFACT_NAME.search(line))
    return Outcome(report, seconds, memory.growth_mb, recorder, new_artifacts(started), changes, leftovers)


def _wait_for_leftovers(recorder: Recorder, client: Any) -> list[str]:
    def leftovers() -> list[str]:
        left = sandbox_processes(recorder.containers, recorder.tokens)
        return left + ([f"container {c}" for c in my_containers(client)] if client is not None else [])

    return _wait_until_gone(leftovers)


def _wait_until_gone(find: Callable[[], list[str]]) -> list[str]:
    """What ``find`` still finds after up to SETTLE_S seconds (a killed process takes a moment to go)."""
    end = time.monotonic() + SETTLE_S
    while True:
        left = find()
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.2)


def assert_host_untouched(outcome: Outcome) -> None:
    assert outcome.leftovers == [], f"left behind: {outcome.leftovers}"
    assert outcome.artifacts == [], f"files appeared on the host: {outcome.artifacts}"
    assert outcome.repo_changes == [], f"new files in the repository: {outcome.repo_changes}"


# ---- the honest part's grade ----


@pytest.fixture(scope="session")
def honest_grades(tmp_path_factory: pytest.TempPathFactory, assignments: dict[str, Assignment]
                  ) -> Callable[[str, str], Report]:
    """``honest(name, backend)``: the report of the case's honest part alone, graded the same way."""
    cache: dict[tuple[str, str, str], Report] = {}

    def honest(name: str, backend: str) -> Report:
        honest = honest_text(name)
        how = CASES[name]["grade"]
        key = (hashlib.sha256(honest.encode()).hexdigest(), backend, repr(sorted(how.items())))
        if key not in cache:
            folder = tmp_path_factory.mktemp("honest")
            (folder / "autograd.py").write_text(honest, encoding="utf-8")
            report = grade(GradeRequest(assignments[how["timeouts"]], folder, backend=backend,
                                        parts=tuple(how["parts"]), visible_only=how["visible_only"])).report
            validate_report_json(report.to_jsonable())
            cache[key] = report
        return cache[key]

    return honest


# ---- per-case set-up and checks ----


@dataclass
class Context:
    name: str
    backend: str
    workdir: Path
    state: dict[str, Any] = field(default_factory=dict)


def copy_submission(ctx: Context, replace: dict[str, str]) -> Path:
    """A copy of the submission with some lines rewritten (the attack's target addresses)."""
    text = submission_text(ctx.name)
    for old, new in replace.items():
        assert old in text, f"{ctx.name}: no line {old!r} to rewrite"
        text = text.replace(old, new)
    folder = ctx.workdir / "submission"
    folder.mkdir()
    (folder / "autograd.py").write_text(text, encoding="utf-8")
    return folder


def docker_gateway(client: Any) -> str | None:
    with contextlib.suppress(Exception):
        return client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    return None


def prepare_network(ctx: Context, client: Any) -> Path:
    listeners = []
    first = socket.socket()
    first.bind(("127.0.0.1", 0))
    port = first.getsockname()[1]
    listeners.append(first)
    hosts = ["127.0.0.1"]
    gateway = docker_gateway(client) if client is not None else None
    if gateway:
        with contextlib.suppress(OSError):
            other = socket.socket()
            other.bind((gateway, port))
            listeners.append(other)
            hosts.append(gateway)
    for s in listeners:
        s.listen(16)
        s.setblocking(False)
    # Positive control: the listeners do see a connection from the host itself.
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert select.select(listeners, [], [], 2.0)[0], "the test's own listener is not reachable"
    listeners[0].accept()[0].close()
    ctx.state.update(listeners=listeners, hosts=hosts)
    return copy_submission(ctx, {"RED_TEAM_PORT = 9 ": f"RED_TEAM_PORT = {port} ",
                                 'RED_TEAM_HOSTS = ("127.0.0.1", "172.17.0.1")': f"RED_TEAM_HOSTS = {tuple(hosts)!r}"})


def check_network(ctx: Context, outcome: Outcome) -> None:
    listeners = ctx.state["listeners"]
    try:
        ready = select.select(listeners, [], [], 1.0)[0]
        peers = [s.accept()[1] for s in ready]
    finally:
        for s in listeners:
            s.close()
    stdout = outcome.report.stdout
    assert "RED-TEAM-NETWORK-TRIED import" in stdout and "RED-TEAM-NETWORK-TRIED backward" in stdout, stdout[:2000]
    assert peers == [], f"the submission reached the host's listeners {ctx.state['hosts']} from {peers}"
    assert "RED-TEAM-CONNECTED" not in stdout


def prepare_repo_path(ctx: Context, client: Any) -> Path:
    return copy_submission(ctx, {'RED_TEAM_REPO = "/work/main"': f"RED_TEAM_REPO = {str(ROOT)!r}"})


def suite_lines(folder: Path) -> set[str]:
    """Distinctive lines of the suites in ``folder`` (long enough not to occur by chance)."""
    return {line.strip() for path in folder.glob("test_*.py")
            for line in path.read_text(encoding="utf-8").splitlines() if len(line.strip()) >= 40}


def check_no_leak(ctx: Context, outcome: Outcome) -> None:
    stdout = outcome.report.stdout
    assert "RED-TEAM-READ-ATTEMPTS" in stdout, "the attack did not run"
    hidden = find_assignment("autograd-lab").hidden_tests
    assert (hidden / "test_ops.py").is_file(), "positive control: the files the attack looks for exist on the host"
    leaked = sorted(line for line in suite_lines(hidden) if line in stdout)
    assert "RED-TEAM-LEAK" not in stdout, stdout[:3000]
    assert leaked == [], f"hidden test lines in the report's stdout: {leaked[:5]}"


EXTRA_SOURCE = '''\
"""Shipped next to autograd.py: must never run (only autograd.py is graded)."""
print("RED-TEAM-EXECUTED {name}")
try:
    open("/tmp/autograd-red-team-{tag}-ran", "w").close()
except OSError:
    pass
'''


def prepare_extras(ctx: Context, client: Any) -> Path:
    folder = copy_submission(ctx, {})
    for extra in EXTRAS:
        path = folder / extra
        path.parent.mkdir(exist_ok=True)
        path.write_text(EXTRA_SOURCE.format(name=extra, tag=extra.replace("/", "-").removesuffix(".py")),
                        encoding="utf-8")
    return folder


def check_extras(ctx: Context, outcome: Outcome) -> None:
    assert "RED-TEAM-EXECUTED" not in outcome.report.stdout
    assert not list(Path("/tmp").glob("autograd-red-team-*-ran"))
    ignored = set(outcome.report.submission.ignored_files)
    assert {"conftest.py", "sitecustomize.py", "usercustomize.py", "numpy.py"} <= ignored, ignored


def check_fork_bomb_bounded(ctx: Context, outcome: Outcome) -> None:
    counts = [int(n) for n in re.findall(r"RED-TEAM-FORKED (\d+)", outcome.report.stdout)]
    pids = find_assignment("autograd-lab").config.sandbox.pids
    assert counts, outcome.report.stdout[:2000]
    assert max(counts) < pids, f"forked {max(counts)} children with a pids limit of {pids}"


def check_output_capped(ctx: Context, outcome: Outcome) -> None:
    assert len(outcome.report.stdout) <= STDOUT_LIMIT
    assert "RED-TEAM-FLOOD" in outcome.report.stdout
    assert "truncated" in outcome.report.stdout


def check_forged_stdout(ctx: Context, outcome: Outcome) -> None:
    from grader.exporters import gradescope_results

    assert '"score": 100.0' in outcome.report.stdout, "the forgery did not run"
    assert json.loads(gradescope_results.dumps(outcome.report))["score"] == pytest.approx(outcome.report.score)


def check_no_pickle_ran(ctx: Context, outcome: Outcome) -> None:
    assert not PICKLE_MARKER.exists(), "the host unpickled data sent by the sandbox"


PREPARE: dict[str, Callable[[Context, Any], Path]] = {
    "network_connect": prepare_network,
    "read_hidden_tests": prepare_repo_path,
    "forged_result_files": prepare_repo_path,
    "shipped_extras": prepare_extras,
}
CHECKS: dict[str, Callable[[Context, Outcome], None]] = {
    "network_connect": check_network,
    "read_hidden_tests": check_no_leak,
    "shipped_extras": check_extras,
    "fork_bomb_at_import": check_fork_bomb_bounded,
    "output_flood": check_output_capped,
    "forged_report_stdout": check_forged_stdout,
    "pickle_frame_in_backward": check_no_pickle_ran,
    "pickle_frame_at_import": check_no_pickle_ran,
}


# ---- the expectations ----


def _contains(text: str, wanted: str | list[str]) -> bool:
    options = [wanted] if isinstance(wanted, str) else wanted
    return any(option.lower() in text.lower() for option in options)


def check_expectations(case: dict[str, Any], backend: str, outcome: Outcome, honest: Report) -> None:
    expect = expectations(case, backend)
    report = outcome.report
    where = f"{case['name']} [{backend}]" + (f" (known weakness: {case['weakness']})" if case.get("weakness") else "")
    assert report.status == expect["status"], f"{where}: status {report.status}, error {report.error}"
    if expect["status"] != "graded":
        assert report.error is not None and report.score == 0
        assert report.error.code == expect["error_code"], where
        assert _contains(report.error.message, expect["message"]), f"{where}: {report.error.message[:1000]}"
    score = expect.get("score")
    if score == "honest":
        assert (report.score, report.max_score) == pytest.approx((honest.score, honest.max_score)), (
            f"{where}: scored {report.score}/{report.max_score}, the honest part alone {honest.score}/{honest.max_score}")
    elif score == "at_most_honest":
        assert report.score <= honest.score + 1e-9, f"{where}: scored {report.score} > honest {honest.score}"
    _check_tests(where, expect, report, honest)
    assert outcome.seconds <= expect["within_s"], f"{where}: took {outcome.seconds:.1f} s > {expect['within_s']} s"
    assert outcome.host_mb <= expect["max_host_mb"], (
        f"{where}: the grader's memory grew by {outcome.host_mb:.0f} MB (> {expect['max_host_mb']} MB)")


def _check_tests(where: str, expect: dict[str, Any], report: Report, honest: Report) -> None:
    wanted = expect.get("tests")
    honest_status = {t.nodeid: t.status for t in honest.tests}
    assert {t.nodeid for t in report.tests} == set(honest_status), f"{where}: not the honest run's tests"
    for test in report.tests:
        if wanted == "honest":
            ok = test.status == honest_status[test.nodeid]
        elif wanted == "at_most_honest":
            ok = test.status == honest_status[test.nodeid] or test.status != "passed"
        else:
            ok = wanted is None or test.status in wanted
        assert ok, f"{where}: {test.name} is {test.status} (expected {wanted}): {test.output[:1500]}"
        if test.status != "passed" and expect.get("output"):
            assert _contains(test.output, expect["output"]), (
                f"{where}: {test.name} says {test.output[:1500]!r}, not {expect['output']!r}")


# ---- the red team ----


@pytest.mark.parametrize("name, backend", graded_params(lambda case: not case["grade"].get("speed_probe")))
def test_attack(name, backend, sandbox_backend, assignments, honest_grades, red_team, tmp_path, request):
    case = CASES[name]
    sandbox_backend(backend)
    client = request.getfixturevalue("docker_client") if backend == "docker" else None
    if name.startswith("kill_parent") and backend == "local" and os.geteuid() != 0:
        pytest.skip("as non-root the local worker runs as the grader's user and may kill it: "
                    "see test_local_backend_as_a_non_root_grader_survives_kill_parent")
    ctx = Context(name, backend, tmp_path)
    submission = PREPARE[name](ctx, client) if name in PREPARE else red_team(name)
    how = case["grade"]
    honest = honest_grades(name, backend)
    PICKLE_MARKER.unlink(missing_ok=True)
    outcome = grade_case(submission, backend, assignments[how["timeouts"]], tuple(how["parts"]),
                         how["visible_only"], client, trace_memory="max_host_mb" in case["expect"])
    assert_host_untouched(outcome)
    if name in CHECKS:
        CHECKS[name](ctx, outcome)
    check_expectations(case, backend, outcome, honest)


# ---- positive controls: the attacks would work if the walls were not there ----


def test_torch_delegation_would_earn_full_marks_if_torch_were_importable(assignments, red_team, monkeypatch):
    """The torch cases' implementation is real: run on the host (trusted, in-process), it passes."""
    from grader.grading.runner import run_suites

    monkeypatch.setenv("GRADER_TRUSTED_INPROCESS", "1")
    outcomes = run_suites(GradeRequest(assignments["assignment"], red_team("torch_import"),
                                       backend="trusted-inprocess", parts=("mlp",), visible_only=True))
    assert outcomes["tests"] and all(t["status"] == "passed" for t in outcomes["tests"]), [
        (t["name"], t["output"][:300]) for t in outcomes["tests"] if t["status"] != "passed"]


def test_pickle_payload_would_create_the_marker_if_unpickled(tmp_path):
    """The pickle cases' payload is live: unpickled, it creates the marker (here, in tmp_path)."""
    import io
    import pickle
    import zipfile

    scope: dict[str, Any] = {"__name__": "_red_team_pickle_probe"}
    source = submission_text("pickle_frame_in_backward")
    exec(compile(source, "pickle_frame_in_backward/autograd.py", "exec"), scope)   # no __pycache__ left
    scope["RED_TEAM_MARKER"] = str(tmp_path / "marker")
    frames = scope["_pickle_frames"]()
    payload = frames[frames.index(b"PK\x03\x04"):]
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        member = archive.read("a0.npy")
    pickle.loads(member[member.index(b"\n") + 1:])          # the .npy body is the pickle
    assert (tmp_path / "marker").exists()


# ---- the speed part: the repeats of a timed request run inside the sandbox ----


def speed_probe_program():
    from grader.testkit import Program

    p = Program("red-team speed probe: a small MLP", seed=7)
    x = p.randn("x", (8, 4))
    W = p.randn("W", (4, 16), requires_grad=True)
    b = p.randn("b", (16,), requires_grad=True)
    loss = (x @ W + b).relu().sum().named("loss")
    p.backward(loss)
    p.snapshot("after backward", [W, b, loss])
    return p


@pytest.mark.parametrize("name, backend", graded_params(lambda case: case["name"] == "skip_timed_repeats"))
def test_timed_repeats_cannot_be_skipped(name, backend, sandbox_backend, assignments, red_team):
    """A submission that patches the worker's ``run_program`` to skip all but the last of a request's
    repeats must not look faster through ``measure_speed``, which the speed tests use: it times every
    run as its own request on fresh draws and checks each answer, so there is nothing left to skip."""
    from grader.grading.executors import TorchExecutor
    from grader.grading.executors import start_executor
    from grader.testkit import measure_speed

    sandbox_backend(backend)
    asg, program = assignments["assignment"], speed_probe_program()
    control = start_executor(backend, red_team("control_slow_backward"), asg, "reference")
    attacked = start_executor(backend, red_team(name), asg, "lab")
    try:
        m = measure_speed(attacked, control, TorchExecutor(), program, rounds=3, slow_limit_s=10.0)
    finally:
        control.close()
        attacked.close()
    assert m.ratio is not None and m.ratio >= 0.5, (
        f"the same slow backward measured {m.ratio:.2f}x the control's time with the worker patched: {m.summary()}")


# ---- the local backend run by a grader that is not root (a TA's machine without root) ----


def _as_non_root_grader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local backend keeps the grader's own user when it is not root; simulate that as root."""
    from grader.sandbox import local_backend

    init = local_backend.LocalSandbox.__init__
    monkeypatch.setattr(local_backend.LocalSandbox, "__init__",
                        lambda self, spec, drop_privileges=False: init(self, spec, drop_privileges))


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="a known, documented limit: run by a non-root user, the local backend has no privilege separation (README, How it works); Docker is the boundary for untrusted work")
def test_local_backend_as_a_non_root_grader_blocks_torch(assignments, red_team, monkeypatch):
    """Known weakness. Without root the worker runs as the grader's user, who can read the grader's
    own site-packages: after undoing the worker's guards and widening sys.path, ``import torch``
    works (``-I -S`` only trims the default sys.path), and a torch-backed lab earns marks."""
    _as_non_root_grader(monkeypatch)
    report = grade(GradeRequest(assignments["assignment"], red_team("torch_import_machinery_restored"),
                                backend="local", parts=("mlp",), visible_only=True)).report
    validate_report_json(report.to_jsonable())
    assert report.status == "submission-error" and report.score == 0, (
        "known weakness: grader/sandbox/local_backend.py (drop_privileges=False) lets the submission import the "
        f"grader's torch: scored {report.score}/{report.max_score}")


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="a known, documented limit: run by a non-root user, the local backend has no privilege separation (README, How it works); Docker is the boundary for untrusted work")
def test_local_backend_as_a_non_root_grader_survives_kill_parent(assignments, red_team, tmp_path):
    """Known weakness. Without root the worker runs as the grader's user: ``os.kill(os.getppid(), 9)``
    kills the grader itself (graded in a child process, so that this test run survives)."""
    out = tmp_path / "report.json"
    script = textwrap.dedent(f"""
        from pathlib import Path
        from grader.assignment import find_assignment
        from grader.report import write_report
        from grader.grading.runner import GradeRequest, grade
        from grader.sandbox import local_backend
        init = local_backend.LocalSandbox.__init__
        local_backend.LocalSandbox.__init__ = lambda self, spec, drop_privileges=False: init(self, spec, drop_privileges)
        report = grade(GradeRequest(find_assignment("autograd-lab"), Path({str(red_team('kill_parent_at_import'))!r}),
                                    backend="local", parts=("mlp",), visible_only=True)).report
        write_report(report, Path({str(out)!r}))
    """)
    tmp = tmp_path / "tmp"       # a killed grader cannot clean its temp dirs: keep them in tmp_path
    tmp.mkdir()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TMPDIR": str(tmp)})
    orphans = _wait_until_gone(lambda: [pid for pid in filter(str.isdigit, os.listdir("/proc"))
                                        if str(tmp).encode() in _proc_read(pid, "cmdline")])
    assert orphans == [], f"the sandbox outlived its grader: processes {orphans}"
    assert done.returncode == 0 and out.is_file(), (
        "known weakness: grader/sandbox/local_backend.py (drop_privileges=False): the submission killed the grader "
        f"(exit status {done.returncode}); {done.stderr[-1500:]}")


# ---- the CLI: forged files and prints do not reach the real report ----


@pytest.fixture(scope="module")
def mlp_assignment(tmp_path_factory: pytest.TempPathFactory) -> Assignment:
    """A copy of the assignment with only its MLP suites (public and hidden): the CLI grades everything."""
    return assignment_copy(find_assignment("autograd-lab"), tmp_path_factory.mktemp("mlp-only"),
                           suites=("test_mlp.py",))


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize("name", ["forged_result_files", "forged_report_stdout"])
def test_cli_report_and_export_keep_the_honest_score(name, docker_client, mlp_assignment, red_team, tmp_path):
    ctx = Context(name, "docker", tmp_path)
    submission = PREPARE[name](ctx, docker_client) if name in PREPARE else red_team(name)
    honest_dir = tmp_path / "honest"
    honest_dir.mkdir()
    (honest_dir / "autograd.py").write_text(honest_text(name), encoding="utf-8")
    honest = grade(GradeRequest(mlp_assignment, honest_dir, backend="docker")).report
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before, started = git_status(), time.time()
    run = [sys.executable, "-m", "grader"]
    graded = subprocess.run(run + ["grade", str(submission), "--backend", "docker", "--assignment",
                                   str(mlp_assignment.root), "-o", str(cwd / "out" / "report.json"), "-q"],
                            cwd=cwd, capture_output=True, text=True, timeout=300)
    exported = subprocess.run(run + ["export", "gradescope", str(cwd / "out" / "report.json"), "-o",
                                     str(cwd / "out" / "results.json")], cwd=cwd, capture_output=True, text=True,
                              timeout=120)
    report = load_report(cwd / "out" / "report.json")
    validate_report_json(report.to_jsonable())
    assert graded.returncode == 1, graded.stdout + graded.stderr          # some test failed: the honest outcome
    assert (report.score, report.max_score) == pytest.approx((honest.score, honest.max_score))
    assert exported.returncode == 0, exported.stderr
    assert json.loads((cwd / "out" / "results.json").read_text())["score"] == pytest.approx(honest.score)
    written = sorted(p.relative_to(cwd).as_posix() for p in cwd.rglob("*") if not p.is_dir())
    assert written == ["out/report.json", "out/results.json"]
    assert new_artifacts(started) == []
    assert sorted(line for line in git_status() - before if ARTIFACT_NAME.search(line)) == []
