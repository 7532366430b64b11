"""The files a worker needs at run time (stdlib + NumPy only), relative to the repo's root.

The local backend runs them from the installed package; the Docker image copies exactly these.
"""

WORKER_FILES: tuple[str, ...] = (
    "grader/__init__.py",
    "grader/sandbox/protocol.py",
    "grader/programs/__init__.py",
    "grader/programs/ops.py",
    "grader/programs/npy.py",
    "grader/programs/draws.py",
    "grader/programs/interpreter.py",
    "grader/sandbox/__init__.py",
    "grader/sandbox/worker.py",
)

WORKER_MODULE = "grader.sandbox.worker"
