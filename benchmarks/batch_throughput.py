"""Throughput of ``grader batch`` on a class of 60 mixed submissions, and a kill -9 + resume run.

The class: the reference (as a folder, a .py and a zip), the template (.py and notebook), the
buggy variants of ``tests/buggy/``, broken submissions (syntax error, missing file, bad zip),
hostile ones that crash, flood or forge (``HOSTILE``, from ``tests/red_team/``) and identical copies. Prints:

1. submissions per minute for ``grader batch -j N`` (target: >= 36/min for 60 submissions, full
   assignment, -j 2) and the grader's own overhead per graded submission: the wall time of its
   grading minus the time its tests took (``timings.tests_seconds``; both in ``OUTDIR/batch.log.jsonl``);
2. that every report equals the one ``grader grade`` writes for that submission alone (scores,
   statuses, messages; not timings or hosts), ``-j`` of them at a time (``--compare-limit`` N: the first N);
3. the same class again, ``kill -9`` of the batch's process group once half the reports exist,
   then a rerun: how many reports the first run left, how many the rerun kept, graded and
   copied, and that none was lost, changed or graded twice.

Usage: python benchmarks/batch_throughput.py [--backend local|docker] [-j 2] [--count 60]
       [--quick] [--keep DIR] [--compare-limit N] [--no-kill]
``--quick`` grades against the "ops" suites only (a copy of the assignment), for a run in minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.buggy import variant_file, variant_names  # noqa: E402
from tests.classwork import essence  # noqa: E402
from tests.test_red_team import submission_text  # noqa: E402

TARGET_PER_MIN = 36.0

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "reference" / "autograd.py"
TEMPLATE = ROOT / "student_template"
# hostile submissions that crash, flood or forge (none that sleeps into its timeouts: those measure
# the timeouts, not the throughput); assembled from tests/red_team/ as its tests do
HOSTILE = ("forged_report_stdout", "forged_result_files", "output_flood", "os_exit_in_backward",
           "segfault_in_backward")


def make_class(folder: Path, count: int) -> int:
    """``count`` submissions in ``folder``; returns how many are identical to an earlier one."""
    folder.mkdir(parents=True)
    (folder / "s000-ref-dir").mkdir()
    shutil.copy(REFERENCE, folder / "s000-ref-dir" / "autograd.py")
    shutil.copy(TEMPLATE / "autograd.py", folder / "s001-template.py")
    shutil.copy(TEMPLATE / "autograd.ipynb", folder / "s002-template-notebook.ipynb")
    (folder / "s003-syntax-error.py").write_text("class Tensor(:\n    pass\n", encoding="utf-8")
    (folder / "s004-missing-file").mkdir()
    (folder / "s004-missing-file" / "tensor.py").write_text("x = 1\n", encoding="utf-8")
    (folder / "s005-bad-zip.zip").write_bytes(b"PK\x03\x04 not a zip")
    for i, case in enumerate(HOSTILE):
        (folder / f"s{6 + i:03d}-hostile-{case}.py").write_text(submission_text(case), encoding="utf-8")
    fixed = 6 + len(HOSTILE)
    variants = [variant_file(name).parent for name in variant_names()]
    duplicates = max(count // 10, count - fixed - len(variants))
    for i, variant in enumerate(variants[: count - fixed - duplicates]):
        shutil.copy(variant / "autograd.py", folder / f"s{fixed + i:03d}-{variant.name}.py")
    for j in range(duplicates):                       # copies of the reference and of a buggy variant
        name = folder / f"s{count - duplicates + j:03d}-copy"
        if j % 2 == 0:
            with zipfile.ZipFile(name.with_suffix(".zip"), "w") as zf:
                zf.write(REFERENCE, "autograd.py")
        else:
            shutil.copy(variants[j % len(variants)] / "autograd.py", name.with_suffix(".py"))
    return duplicates


def quick_assignment(folder: Path) -> Path:
    """autograd-lab with only its "ops" suites (as tests/test_batch.py uses)."""
    suites = ROOT / "assignments" / "autograd-lab" / "tests"
    root = folder / "autograd-lab"
    for visibility in ("public", "hidden"):
        (root / "tests" / visibility).mkdir(parents=True)
        for name in ("__init__.py", "test_ops.py"):
            shutil.copy(suites / visibility / name, root / "tests" / visibility / name)
    (root / "assignment.yaml").write_text(
        "name: autograd-lab\ntitle: Autograd From Scratch (ops only)\nmodule: autograd\n"
        f"required_files: [autograd.py]\nreference: {ROOT / 'reference'}\nseed: 20261122\n"
        "banned_imports: [torch]\nparts:\n  ops: {points: 22, title: Ops}\n"
        "timeouts: {import_s: 10, request_s: 3}\n", encoding="utf-8")
    return root


def batch_argv(args: argparse.Namespace, source: Path, outdir: Path) -> list[str]:
    return [sys.executable, "-m", "grader", "batch", str(source), f"--assignment={args.assignment}", "-o", str(outdir),
            "-j", str(args.jobs), "--backend", args.backend, "--timeout", str(args.timeout)]


def events(outdir: Path) -> list[dict]:
    found = []
    for line in (outdir / "batch.log.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found


def throughput(args: argparse.Namespace, source: Path, outdir: Path, count: int) -> float:
    started = time.monotonic()
    done = subprocess.run(batch_argv(args, source, outdir), capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"batch failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    graded = [e for e in events(outdir) if e["event"] == "graded"]
    copied = [e for e in events(outdir) if e["event"] == "copied"]
    overheads = [e["wall_seconds"] - e["tests_seconds"] for e in graded if e["status"] != "sandbox-error"]
    print(f"\n== throughput: {count} submissions, -j {args.jobs}, {args.backend} backend, {args.assignment}")
    print(f"wall time                {wall:8.1f} s")
    rate = count / wall * 60
    print(f"submissions per minute   {rate:8.2f}   target >= {TARGET_PER_MIN:g} "
          f"({'met' if rate >= TARGET_PER_MIN else 'NOT met'}; {len(graded)} graded, {len(copied)} identical copied)")
    print(f"grading process (median) {statistics.median(e['wall_seconds'] for e in graded):8.2f} s wall")
    print(f"grader overhead / sub    {statistics.median(overheads):8.2f} s median, {statistics.fmean(overheads):.2f} s "
          f"mean  (process wall time - tests_seconds, {len(overheads)} graded submissions)")
    statuses = {s: sum(e["status"] == s for e in graded) for s in sorted({e["status"] for e in graded})}
    print(f"statuses of the graded   {statuses}")
    print("\n".join(done.stdout.strip().splitlines()[-8:]))
    return rate


def compare_with_grade(args: argparse.Namespace, source: Path, outdir: Path) -> bool:
    """Grade each graded student alone with ``grader grade``; every report must agree with the batch's."""
    graded = [e for e in events(outdir) if e["event"] == "graded"]
    graded = graded[: args.compare_limit] if args.compare_limit else graded
    entries = {p.stem: p for p in source.iterdir()}
    alone = outdir.parent / (outdir.name + "-alone")
    alone.mkdir(exist_ok=True)
    started, running, differ = time.monotonic(), [], []
    queue = list(graded)
    while queue or running:
        while queue and len(running) < args.jobs:
            event = queue.pop(0)
            out = alone / event["report"]
            argv = [sys.executable, "-m", "grader", "grade", str(entries[event["student"]]),
                    f"--assignment={args.assignment}", f"--backend={args.backend}", f"--student={event['student']}",
                    f"--output={out}", "--quiet"]
            running.append((event, out, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                         cwd=ROOT)))
        for item in list(running):
            event, out, proc = item
            if proc.poll() is None:
                continue
            running.remove(item)
            batch_report = outdir / "reports" / event["report"]
            if not out.exists() or essence(out) != essence(batch_report):
                differ.append(event["student"])
        time.sleep(0.2)
    print(f"\n== every report vs `grader grade` alone ({len(graded)} graded submissions, "
          f"{time.monotonic() - started:.0f} s)")
    print(f"reports that differ      {len(differ):8d}   target 0 ({'met' if not differ else 'NOT met: ' + ', '.join(differ)})")
    return not differ


def kill_and_resume(args: argparse.Namespace, source: Path, outdir: Path, count: int) -> None:
    batch = subprocess.Popen(batch_argv(args, source, outdir), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    while len(list((outdir / "reports").glob("*.json"))) < count // 2:
        if batch.poll() is not None:
            sys.exit("the batch finished before it could be killed")
        time.sleep(0.2)
    os.killpg(batch.pid, signal.SIGKILL)
    batch.wait()
    time.sleep(2)                                           # its grading processes get SIGINT and exit
    first = {p.name: (p.stat().st_ino, p.read_bytes()) for p in (outdir / "reports").glob("*.json")}
    leftovers = len(list((outdir / ".tmp").glob("*"))) if (outdir / ".tmp").exists() else 0
    started = time.monotonic()
    done = subprocess.run(batch_argv(args, source, outdir), capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - started
    plan = re.search(r"(\d+) reports kept, (\d+) to grade, (\d+) to copy", done.stdout)
    after = {p.name: (p.stat().st_ino, p.read_bytes()) for p in (outdir / "reports").glob("*.json")}
    runs: list[list[str]] = []
    for event in events(outdir):
        if event["event"] == "run-start":
            runs.append([])
        elif event["event"] in ("graded", "copied"):
            runs[-1].append(event["student"])
    twice = set(runs[0]) & set(runs[-1]) if len(runs) == 2 else {"?"}
    changed = [name for name in first if after.get(name) != first[name]]
    print(f"\n== kill -9 of the batch's process group after {len(first)} of {count} reports, then a rerun")
    print(f"temp files left by the killed run   {leftovers} (removed by the rerun: "
          f"{'yes' if not list(outdir.rglob('*.tmp')) else 'NO'})")
    print(f"rerun: kept {plan[1]}, graded {plan[2]}, copied {plan[3]} in {wall:.1f} s" if plan else done.stdout)
    print(f"reports at the end                   {len(after)} (expected {count})")
    print(f"first-run reports changed           {len(changed)}")
    print(f"students graded in both runs        {len(twice)}")
    ok = done.returncode == 0 and len(after) == count and not changed and not twice
    print("RESULT: " + ("nothing lost, nothing graded twice" if ok else "FAILED"))
    if not ok:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "docker"], default="local")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--assignment", default="autograd-lab")
    parser.add_argument("--quick", action="store_true", help="grade with the ops suites only")
    parser.add_argument("--timeout", type=float, default=1800.0, help="batch --timeout per submission")
    parser.add_argument("--keep", type=Path, default=None, help="keep the class and outputs in this folder")
    parser.add_argument("--compare-limit", type=int, default=0, help="compare only the first N reports (0: all)")
    parser.add_argument("--no-kill", action="store_true", help="skip the kill -9 + resume run")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="batch-bench-"))
    try:
        if args.quick:
            args.assignment = str(quick_assignment(work))
        source = work / "class"
        duplicates = make_class(source, args.count)
        print(f"class of {args.count} in {source} ({duplicates} identical to another)")
        print(f"load before: {os.getloadavg()[0]:.1f} (1-min average, {os.cpu_count()} cores)")
        throughput(args, source, work / "out-throughput", args.count)
        print(f"load after:  {os.getloadavg()[0]:.1f}")
        same = compare_with_grade(args, source, work / "out-throughput")
        if not args.no_kill:
            kill_and_resume(args, source, work / "out-kill", args.count)
        if not same:
            sys.exit(1)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
