"""Hostile probe: relu removes the import blocker, tries to import what the host has installed,
and prints what it can see of its environment as one JSON line (the test reads it)."""
import builtins
import importlib
import json
import os
import resource
import sys

import numpy as np

NAMES = ("torch", "yaml", "pytest", "hypothesis", "grader.grading.executors", "grader.sandbox.base")


def _try(name):
    try:
        importlib.import_module(name)
        return "imported"
    except BaseException as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


class Tensor:
    def __init__(self, data, requires_grad=False):
        self.data, self.requires_grad, self.grad = np.array(data, dtype=np.float64), requires_grad, None

    def relu(self):
        blocked = {name: _try(name) for name in NAMES}
        sys.meta_path[:] = [f for f in sys.meta_path if "Banned" not in type(f).__name__]
        builtins.__import__ = importlib.__import__
        report = {
            "blocked": blocked,
            "unblocked": {name: _try(name) for name in NAMES},
            "path": sys.path, "cwd": os.getcwd(), "uid": os.getuid(), "env": sorted(os.environ),
            "recursionlimit": sys.getrecursionlimit(),
            "rlimits": {name: resource.getrlimit(getattr(resource, name))[0]
                        for name in ("RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")},
        }
        print("PROBE " + json.dumps(report))
        return Tensor(np.maximum(self.data, 0), self.requires_grad)
