"""torch's results of Programs, kept as data: a JSON index + an ``.npz`` of arrays, by content hash.

For the assignment's own seed the public Programs are the same for every student, so staff
compute torch's results once (``grader expectations build``) and ship them: ``grader check``
then needs no torch. The file is deterministic (sorted keys, fixed zip timestamps), so it
only changes in git when a Program or torch's answer does, and it is safe to load: plain JSON,
and arrays read by the frames' checked .npy reader (``grader.programs.npy``: numeric dtypes only,
never a pickle) and validated like a worker's evidence.

    <folder>/<name>.json   {"format": 1, "assignment", "seed", "torch", "programs": {digest: {...}}}
    <folder>/<name>.npz    arrays named "<digest>/<key>"
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from grader.programs.interpreter import RunResult
from grader.programs.program import Program
from grader.programs.wire import MalformedEvidence, run_result_from_wire
from grader.programs.npy import npy_array

FORMAT = 1
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ExpectationsError(Exception):
    """An expectations file is missing its pair, malformed, or of another format."""


def program_digest(program: Program) -> str:
    """SHA-256 of what a Program computes: its steps, seed and title, and every array's dtype, shape, bytes."""
    header, arrays = program.to_wire()
    h = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for key in sorted(arrays):
        arr = np.asarray(arrays[key], order="C")
        h.update(f"\0{key}\0{arr.dtype.str}\0{arr.shape}\0".encode("utf-8"))
        h.update(arr.tobytes())
    return h.hexdigest()


class Expectations:
    """Results by Program digest; ``get`` answers for a Program, ``add`` records one.

    A loaded file reads an entry's arrays only when a Program asks for it (a check uses a
    handful of a file's Programs), and validates them then, as a worker's evidence is.
    """

    def __init__(self, meta: dict[str, Any] | None = None) -> None:
        self.meta: dict[str, Any] = dict(meta or {})
        self.entries: dict[str, tuple[str, dict[str, Any], dict[str, np.ndarray] | None]] = {}
        self._npz: zipfile.ZipFile | None = None   # the .npz file's members, read (and checked) on first use
        self._members: dict[str, list[str]] = {}
        self._where = ""
        self.read_only = False      # hand out read-only arrays (a store shared between jobs: ``load_shared``)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, program: Program) -> bool:
        return program_digest(program) in self.entries

    def add(self, program: Program, result: RunResult) -> None:
        header, arrays = result.to_wire()
        arrays = {k: v for k, v in arrays.items() if not k.startswith("in_")}  # the Program has the inputs
        self.entries[program_digest(program)] = (program.title, header, arrays)

    def get(self, program: Program) -> RunResult | None:
        digest = program_digest(program)
        if digest not in self.entries:
            return None
        _, header, arrays = self.arrays_of(digest)
        try:
            return run_result_from_wire(header, arrays)
        except MalformedEvidence as exc:
            raise ExpectationsError(f"{self._where}: entry {digest[:12]} is malformed: {exc}") from None

    def arrays_of(self, digest: str) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
        """An entry with its arrays read (from the ``.npz``, by ``npy_array``, on first use)."""
        title, header, arrays = self.entries[digest]
        if arrays is None:
            try:
                arrays = {k.split("/", 1)[1]: npy_array(self._npz.read(k + ".npy"), k)
                          for k in self._members.get(digest, [])}
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                raise ExpectationsError(f"{self._where}: entry {digest[:12]}: {exc}") from None
            if self.read_only:
                for arr in arrays.values():
                    arr.setflags(write=False)
            self.entries[digest] = (title, header, arrays)
        return title, header, arrays

    # ---- files ----

    def save(self, folder: Path, name: str) -> tuple[Path, Path]:
        """Write ``name.json`` and ``name.npz``, byte for byte the same for the same contents."""
        folder.mkdir(parents=True, exist_ok=True)
        entries = {d: self.arrays_of(d) for d in sorted(self.entries)}
        index = {"format": FORMAT, **self.meta,
                 "programs": {d: {"title": t, "result": h} for d, (t, h, _) in entries.items()}}
        json_path, npz_path = folder / f"{name}.json", folder / f"{name}.npz"
        _atomic_write(json_path, (json.dumps(index, indent=1, sort_keys=True) + "\n").encode("utf-8"))
        _atomic_write(npz_path, _npz_bytes({f"{d}/{k}": a for d, (_, _, arrays) in entries.items()
                                            for k, a in arrays.items()}))
        return json_path, npz_path

    @classmethod
    def load(cls, folder: Path, name: str) -> Expectations:
        """Read the index now and the arrays when asked (``get``); never unpickles anything."""
        json_path, npz_path = folder / f"{name}.json", folder / f"{name}.npz"
        try:
            index = json.loads(json_path.read_text(encoding="utf-8"))
            npz = zipfile.ZipFile(io.BytesIO(npz_path.read_bytes()))
            members = [name[:-4] for name in npz.namelist() if name.endswith(".npy")]
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ExpectationsError(f"cannot read expectations {json_path} / {npz_path}: {exc}") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT or not isinstance(index.get("programs"), dict):
            raise ExpectationsError(f"{json_path} is not an expectations file of format {FORMAT}")
        store = cls({k: v for k, v in index.items() if k not in ("format", "programs")})
        store._npz, store._where = npz, str(json_path)
        for member in members:
            store._members.setdefault(member.split("/", 1)[0], []).append(member)
        for digest, entry in index["programs"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("result"), dict):
                raise ExpectationsError(f"{json_path}: entry {str(digest)[:12]} is malformed")
            store.entries[str(digest)] = (str(entry.get("title", "")), entry["result"], None)
        return store


_SHARED: dict[tuple[str, str], tuple[tuple[int, ...], Expectations]] = {}


def load_shared(folder: Path, name: str) -> Expectations:
    """``Expectations.load``, kept for the life of the process while the two files are unchanged
    (same size and mtime): a grading service reads and decodes them once, not once per job. The
    arrays it hands out are read-only, so no test can change what the next one is compared with."""
    json_path, npz_path = folder / f"{name}.json", folder / f"{name}.npz"
    try:
        stamp = tuple(v for st in (json_path.stat(), npz_path.stat()) for v in (st.st_size, st.st_mtime_ns))
    except OSError as exc:
        raise ExpectationsError(f"cannot read expectations {json_path} / {npz_path}: {exc}") from None
    key = (str(folder.resolve()), name)
    kept = _SHARED.get(key)
    if kept is None or kept[0] != stamp:
        store = Expectations.load(folder, name)
        store.read_only = True
        _SHARED[key] = kept = (stamp, store)
    return kept[1]


def exists(folder: Path, name: str) -> bool:
    return (folder / f"{name}.json").is_file() and (folder / f"{name}.npz").is_file()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed ``.npz`` with sorted members and fixed timestamps (``np.savez`` stamps the time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[key], order="C"), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME), member.getvalue())
    return buf.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
