"""Throughput of ``grader batch --cluster`` with one and two Dask workers vs the local batch at the same -j.

Starts a real ``dask scheduler`` and ``grader worker`` processes on loopback (random free ports),
grades the mixed class of ``benchmarks/batch_throughput.py`` and prints submissions per minute
for: local ``-j 1``, cluster with 1 worker, local ``-j 2``, cluster with 2 workers, and each
cluster figure as a fraction of the local one at the same concurrency (target: at most 10% below,
i.e. >= 0.90). Also checks that the cluster's reports equal the local batch's.

Usage: python benchmarks/cluster_throughput.py [--count 30] [--backend local|docker] [--full] [--keep DIR]
(default: the "ops" suites only, for a run in minutes; ``--full`` grades with the whole assignment).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_throughput import make_class, quick_assignment  # noqa: E402
from tests.classwork import essences  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT, env=env())


def start_cluster(work: Path, workers: int, backend: str) -> tuple[str, list[subprocess.Popen[bytes]]]:
    import distributed

    address = f"tcp://127.0.0.1:{free_port()}"
    procs = [spawn([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
                    address.rsplit(":", 1)[1], "--no-dashboard"], work / "scheduler.log")]
    for i in range(workers):
        procs.append(spawn([sys.executable, "-m", "grader", "worker", address, "--backend", backend,
                            "--host", "127.0.0.1", "--name", f"w{i}"], work / f"worker{i}.log"))
    with distributed.Client(address, timeout=120) as client:
        client.wait_for_workers(workers, timeout=300)
    time.sleep(10)          # the preloaded grading processes finish importing torch
    return address, procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def batch(args: argparse.Namespace, source: Path, outdir: Path, *extra: str) -> float:
    argv = [sys.executable, "-m", "grader", "batch", str(source), f"--assignment={args.assignment}", "-o", str(outdir),
            "--backend", args.backend, *extra]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env())
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"batch failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return args.count / wall * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--backend", choices=["local", "docker"], default="local")
    parser.add_argument("--full", action="store_true", help="the whole assignment, not only the ops suites")
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    try:
        args.assignment = "autograd-lab" if args.full else str(quick_assignment(work))
        source = work / "class"
        make_class(source, args.count)
        print(f"class of {args.count}, {args.backend} backend, {'full assignment' if args.full else 'ops suites'}; "
              f"load {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
        for n in (1, 2):
            local = batch(args, source, work / f"local-{n}", "-j", str(n))
            address, procs = start_cluster(work, n, args.backend)
            try:
                remote = batch(args, source, work / f"cluster-{n}", "--cluster", address)
            finally:
                stop(procs)
            same = essences(work / f"local-{n}" / "reports") == essences(work / f"cluster-{n}" / "reports")
            ratio = remote / local
            print(f"-j {n}: local {local:6.2f}/min, cluster with {n} worker(s) {remote:6.2f}/min, "
                  f"ratio {ratio:.2f} (target >= {TARGET_RATIO:.2f}: {'met' if ratio >= TARGET_RATIO else 'NOT met'}); "
                  f"reports equal: {'yes' if same else 'NO'}; load {os.getloadavg()[0]:.1f}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
