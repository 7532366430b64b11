"""Per-submission overhead of the docker sandbox: what one container costs before any test runs.

Each repeat makes a container exactly as for a submission (the reference solution as the
submission), then times: create, attach + start, the worker's connection to the frames' socket
(Python + NumPy started), its hello (the submission imported), one small request, and removal
(kill + remove). Prints the median of each phase. Usage: python benchmarks/docker_overhead.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from grader.sandbox.protocol import read_frame, write_frame
from grader.sandbox.base import SandboxLimits, WorkerSpec
from grader.sandbox.docker_backend import (
    SANDBOX_IDS, attach, create_container, remove_container, stage_readable, worker_command,
)
from grader.sandbox.unix_channel import Listener
from grader.sandbox.image import docker_client, ensure_image

REFERENCE = Path(__file__).resolve().parent.parent / "reference"


def one_submission(client, image: str, submission: Path, spec: WorkerSpec) -> dict[str, float]:
    marks = {"start": time.perf_counter()}
    listener = Listener(owner=SANDBOX_IDS)
    container_id = create_container(client, image, submission, spec.limits,
                                    [*worker_command(spec), "--connect", listener.container_path],
                                    channel_dir=listener.folder)
    marks["create"] = time.perf_counter()
    attached = attach(client, container_id, spec.limits)
    client.api.start(container_id)
    marks["attach+start"] = time.perf_counter()
    stream = listener.accept(time.monotonic() + 60, lambda: False)
    marks["connect"] = time.perf_counter()
    hello = read_frame(stream, 1 << 20)
    assert hello and hello[0].get("import_ok"), hello
    marks["hello"] = time.perf_counter()
    write_frame(stream, {"type": "nonsense"}, {})      # a cheap round trip through the worker
    read_frame(stream, 1 << 20)
    marks["request"] = time.perf_counter()
    stream.close()
    attached.close()
    remove_container(client, container_id)
    marks["remove"] = time.perf_counter()
    names = list(marks)
    return {b: marks[b] - marks[a] for a, b in zip(names, names[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    client = docker_client()
    image = ensure_image(client)
    spec = WorkerSpec(REFERENCE, limits=SandboxLimits())
    staged = stage_readable(spec)
    try:
        submission = Path(staged.name) / "submission"
        one_submission(client, image, submission, spec)          # warm-up
        runs = [one_submission(client, image, submission, spec) for _ in range(args.repeats)]
    finally:
        staged.cleanup()
    print(f"docker sandbox overhead per submission, median of {args.repeats} ({image})")
    for phase in runs[0]:
        print(f"  {phase:<14}{statistics.median(r[phase] for r in runs) * 1000:8.1f} ms")
    print(f"  {'total':<14}{statistics.median(sum(r.values()) for r in runs) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
