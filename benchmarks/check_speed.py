"""How long a student waits for `grader check`, a TA for `grader grade`, and whether speed verdicts hold under load.

    python3 benchmarks/check_speed.py                      # figures + a quick robustness run
    python3 benchmarks/check_speed.py --robustness full    # 50 grades of each main style, 10 per slow bug
    python3 benchmarks/check_speed.py --robustness none --no-docker

Prints each figure beside its target (issue 9). Wall times are medians of --runs runs; the peak
memory is the largest sum of RSS over the process tree (the grader, pytest, both sandboxes),
sampled every 10 ms with psutil. Robustness runs hold a competing CPU load: one busy-loop process
per core. Correct implementations: the reference, benchmarks/correct/* (two small independent
ones written for this benchmark) and tests/correct/* where present. The slow bugs are the
variants of tests/buggy/ named in SLOW_BUGS. Report the machine's load (printed) with any figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.buggy import materialize  # noqa: E402

SLOW_BUGS = {  # what each must fail, every time: the speed part
    "matmul_python_loops": "a Python-loop matmul",
    "recursive_topo_sort": "a recursive topological sort",
    "topo_sort_list_membership": "a list-membership (quadratic) topological sort",
    "backward_per_path_recursion": "a path-enumerating backward",
}
TORCH_PROBE = ("import atexit, runpy, sys\n"
               "atexit.register(lambda: print('TORCH-IMPORTED', 'torch' in sys.modules, file=sys.stderr))\n"
               "sys.argv = ['grader'] + sys.argv[1:]\n"
               "runpy.run_module('grader', run_name='__main__')\n")
CPU: list[float] = []
PSS = [0.0]  # the largest proportional set size seen (shared pages split between processes)
RATIO = re.compile(r"judged: ([0-9.]+)x|ratio ([0-9.]+)x(?!; backward)")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(cmd: list[str]) -> tuple[float, float, str, int]:
    """(wall seconds, peak RSS MiB of the process tree, stderr, exit status); CPU seconds go to CPU."""
    cpu = children_cpu()
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                tree = [p for p in [proc, *proc.children(recursive=True)] if p.is_running()]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree))
                peak[1] = max(peak[1], sum(p.memory_full_info().pss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    PSS[0] = max(PSS[0], peak[1] / 2**20)
    CPU.append(children_cpu() - cpu)  # the whole tree's CPU: what the wall time is on an idle machine
    return wall, peak[0] / 2**20, err, proc.returncode


def timed(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def line(name: str, value: str, target: str, ok: bool | None = None) -> None:
    mark = "" if ok is None else ("  OK" if ok else "  MISSED")
    print(f"  {name:<58} {value:>16}   target {target}{mark}", flush=True)


def breakdown(runs: int) -> None:
    print("where the time of `grader check` goes (medians):")
    py = sys.executable
    line("interpreter start (python -c pass)", f"{timed([py, '-c', 'pass'], runs):.2f} s", "-")
    line("import grader.cli", f"{timed([py, '-c', 'import grader.cli'], runs):.2f} s", "-")
    line("import the check path (runner, plugin, executors)",
         f"{timed([py, '-c', 'import grader.commands.check, grader.grading.pytest_plugin'], runs):.2f} s", "-")
    collect = [py, "-c", "import os, sys, pytest; os.environ['PYTEST_DISABLE_PLUGIN_AUTOLOAD'] = '1'; "
               "sys.exit(pytest.main(['-p', 'grader.grading.pytest_plugin', '--collect-only', '-q', "
               "'-p', 'no:cacheprovider', 'assignments/autograd-lab/tests']))"]
    base = timed([py, "-c", "import pytest, grader.grading.pytest_plugin"], runs)
    line("pytest collection of the suites, as grading runs it (minus imports)",
         f"{max(0.0, timed(collect, runs) - base):.2f} s", "-")
    code = ("import time; from pathlib import Path; from grader.assignment import find_assignment; "
            "from grader.grading.executors import start_executor; a = find_assignment('autograd-lab'); "
            "t = time.perf_counter(); e = start_executor('local', Path('reference'), a, 'lab'); "
            "print(time.perf_counter() - t); e.close()")
    starts = [float(subprocess.run([py, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True,
                                   check=True).stdout.split()[-1]) for _ in range(runs)]
    line("local sandbox start (to the worker's hello; 1 per check, 2 per grade)", f"{statistics.median(starts):.2f} s", "-")


def check_figure(runs: int) -> None:
    print("grader check reference/ (full public suite, local sandbox):")
    CPU.clear()
    results = [run_measured([sys.executable, "-c", TORCH_PROBE, "check", "reference/"]) for _ in range(runs)]
    wall = statistics.median(r[0] for r in results)
    peak = max(r[1] for r in results)
    torch = any("TORCH-IMPORTED True" in r[2] for r in results)
    line("wall (median)", f"{wall:.2f} s", "<= 3 s", wall <= 3)
    line("  CPU seconds of the process tree (median; ~ wall when idle)", f"{statistics.median(CPU):.2f} s", "-")
    line("peak RSS of the process tree (max)", f"{peak:.0f} MiB", "<= 150 MiB", peak <= 150)
    line("  the same as PSS (shared libraries counted once)", f"{PSS[0]:.0f} MiB", "-")
    line("torch imported", str(torch), "False", not torch)
    line("exit status", ", ".join(str(r[3]) for r in results), "0", all(r[3] == 0 for r in results))


def grade_figure(runs: int) -> None:
    print("grader grade --backend docker reference/ (public + hidden):")
    subprocess.run([sys.executable, "-m", "grader", "image", "build"], cwd=ROOT, env=env(), check=True,
                   capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "grader", "grade", "reference/", "--backend", "docker", "-o", f"{tmp}/r.json"]
        results = [run_measured(cmd) for _ in range(runs)]
        score = json.loads(Path(f"{tmp}/r.json").read_text())
    wall = statistics.median(r[0] for r in results)
    line("wall (median)", f"{wall:.2f} s", "<= 5 s", wall <= 5)
    line("  CPU seconds of the grader (median; the containers' CPU is the engine's)",
         f"{statistics.median(CPU[-runs:]):.2f} s", "-")
    line("score", f"{score['score']:g}/{score['max_score']:g}", "full marks", score["score"] == score["max_score"])


def burn() -> None:
    while True:
        pass


def grade_once(submission: Path, backend: str, part: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "grader", "grade", str(submission), "--backend", backend, "-o", f"{tmp}/r.json"]
        cmd += ["--part", part] if part else []
        subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True)
        return json.loads(Path(f"{tmp}/r.json").read_text())


def ratios(report: dict) -> list[float]:
    out = []
    for t in report["tests"]:
        if t["part"] == "speed":
            out += [float(a or b) for a, b in RATIO.findall(t["output"])]
    return out


def robustness(grades: int, other_grades: int, bug_grades: int, backend: str) -> None:
    """``grades`` full grades of each of the three main styles (the reference and benchmarks/correct/*),
    ``other_grades`` of each of tests/correct/*, ``bug_grades`` speed grades of each slow bug."""
    main_styles = [ROOT / "reference", *sorted(p for p in (ROOT / "benchmarks" / "correct").iterdir() if p.is_dir())]
    others = sorted(p for p in (ROOT / "tests" / "correct").glob("*") if (p / "autograd.py").is_file())
    styles = [(style, grades) for style in main_styles] + [(style, other_grades) for style in others]
    load = [multiprocessing.Process(target=burn, daemon=True) for _ in range(os.cpu_count() or 2)]
    for p in load:
        p.start()
    try:
        print(f"robustness under a competing load ({len(load)} busy loops), backend {backend}, "
              f"load average {os.getloadavg()[0]:.1f}:")
        for style, grades in styles:
            if not grades:
                continue
            failures, seen, full = 0, [], 0
            for _ in range(grades):
                report = grade_once(style, backend, None)
                failures += sum(t["status"] != "passed" for t in report["tests"] if t["part"] == "speed")
                full += report["score"] == report["max_score"]
                seen += ratios(report)
            line(f"{style.relative_to(ROOT)}: speed-test failures in {grades} full grades", str(failures), "0",
                 failures == 0)
            print(f"      full marks {full}/{grades}; judged ratios {min(seen):.2f}x..{max(seen):.2f}x, "
                  f"median {statistics.median(seen):.2f}x")
        with tempfile.TemporaryDirectory() as tmp:
            for name, what in SLOW_BUGS.items():
                submission = materialize(name, Path(tmp) / name)
                caught, seen = 0, []
                for _ in range(bug_grades):
                    report = grade_once(submission, backend, "speed")
                    caught += report["parts"]["speed"]["score"] < report["parts"]["speed"]["max_score"]
                    seen += ratios(report)
                line(f"{what} ({name}) caught", f"{caught}/{bug_grades}", f"{bug_grades}/{bug_grades}",
                     caught == bug_grades)
                if seen:
                    print(f"      ratios seen {min(seen):.2f}x..{max(seen):.2f}x (the others: too slow for one run, "
                          f"or a wrong answer)")
    finally:
        for p in load:
            p.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per wall-time figure (median)")
    parser.add_argument("--robustness", choices=("none", "quick", "full"), default="quick",
                        help="quick: 3 grades of each main correct style (the reference, benchmarks/correct/*), 1 of each "
                             "of tests/correct/*, 2 per slow bug; full: 50, 3 and 10")
    parser.add_argument("--grades", type=int, default=None, help="override the grades of each main style")
    parser.add_argument("--bug-grades", type=int, default=None, help="override the grades of each slow bug")
    parser.add_argument("--backend", default="local", help="sandbox backend of the robustness grades")
    parser.add_argument("--no-docker", action="store_true", help="skip the `grader grade --backend docker` figure")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
          f"{os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f} (uptime)")
    breakdown(args.runs)
    check_figure(args.runs)
    if not args.no_docker:
        grade_figure(args.runs)
    if args.robustness != "none":
        grades, others, bugs = (50, 3, 10) if args.robustness == "full" else (3, 1, 2)
        grades = args.grades if args.grades is not None else grades
        bugs = args.bug_grades if args.bug_grades is not None else bugs
        robustness(grades, others, bugs, args.backend)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
