"""An assignment: ``assignment.yaml`` (parts, points, limits) and its test folders, validated.

Every bad value is reported with the file and the key path it came from, e.g.
``assignments/autograd-lab/assignment.yaml: parts.ops.points: Input should be greater than 0``.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from grader.errors import AssignmentError
from grader.sandbox.base import SandboxLimits

ASSIGNMENTS_DIR = Path(__file__).resolve().parent.parent / "assignments"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Part(_Strict):
    points: float = Field(gt=0)
    title: str = ""


class Timeouts(_Strict):
    import_s: float = Field(20.0, gt=0, le=600)
    request_s: float = Field(20.0, gt=0, le=3600)


class SpeedLimits(_Strict):
    matmul_factor: float = Field(4.0, ge=1)
    chain_factor: float = Field(10.0, ge=1)
    diamond_factor: float = Field(10.0, ge=1)
    rounds: int = Field(7, ge=1, le=51)


class SandboxConfig(_Strict):
    memory_mb: int = Field(1024, ge=128, le=16384)
    pids: int = Field(64, ge=8, le=4096)
    cpus: float = Field(1.0, gt=0, le=64)
    tmpfs_mb: int = Field(64, ge=1, le=4096)
    output_kb: int = Field(64, ge=1, le=10240)

    def limits(self, timeouts: Timeouts) -> SandboxLimits:
        return SandboxLimits(memory_mb=self.memory_mb, pids=self.pids, cpus=self.cpus, tmpfs_mb=self.tmpfs_mb,
                             output_kb=self.output_kb, startup_timeout_s=timeouts.import_s)


class AssignmentConfig(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str
    module: str = Field("autograd", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    required_files: tuple[str, ...] = ("autograd.py",)
    reference: str | None = "../../reference"   # null in a student bundle: speed is then judged by time limits
    seed: int = Field(0, ge=0, lt=2**32)
    banned_imports: tuple[str, ...] = ("torch",)
    parts: dict[str, Part]
    timeouts: Timeouts = Timeouts()
    speed: SpeedLimits = SpeedLimits()
    sandbox: SandboxConfig = SandboxConfig()

    @field_validator("parts")
    @classmethod
    def _has_parts(cls, parts: dict[str, Part]) -> dict[str, Part]:
        if not parts:
            raise ValueError("an assignment needs at least one part")
        return parts


class Assignment:
    """A validated assignment and where its files are."""

    def __init__(self, root: Path, config: AssignmentConfig) -> None:
        self.root, self.config = root, config

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def max_score(self) -> float:
        return sum(p.points for p in self.config.parts.values())

    @property
    def public_tests(self) -> Path:
        return self.root / "tests" / "public"

    @property
    def hidden_tests(self) -> Path:
        return self.root / "tests" / "hidden"

    @property
    def expectations_dir(self) -> Path:
        """torch's results of the suites' Programs at ``seed`` (``grader expectations build``):
        ``public.{json,npz}`` (shipped to students) and ``hidden.{json,npz}`` (staff only)."""
        return self.root / "expectations"

    @property
    def reference_dir(self) -> Path | None:
        """The staff solution's folder, or None where it is not shipped (a student bundle)."""
        if self.config.reference is None:
            return None
        folder = (self.root / self.config.reference).resolve()
        if not (folder / f"{self.config.module}.py").is_file():
            raise AssignmentError(f"{self.root / 'assignment.yaml'}: reference: no {self.config.module}.py in {folder}",
                                  hint="set `reference:` to the staff solution's folder, or to null")
        return folder

    @property
    def limits(self) -> SandboxLimits:
        return self.config.sandbox.limits(self.config.timeouts)


def load_assignment(path: Path) -> Assignment:
    """Load ``path`` (an assignment folder or its ``assignment.yaml``), with a clear error when bad."""
    path = Path(path)
    yaml_path = path / "assignment.yaml" if path.is_dir() else path
    if not yaml_path.is_file():
        raise AssignmentError(f"no assignment.yaml at {yaml_path}",
                              hint="pass an assignment name (see `grader assignments`) or its folder")
    try:
        raw = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise AssignmentError(f"{yaml_path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise AssignmentError(f"{yaml_path}: expected a mapping of settings, got {type(raw).__name__}")
    try:
        config = AssignmentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise AssignmentError(f"{yaml_path}: {problems}") from None
    return Assignment(yaml_path.parent.resolve(), config)


def find_assignment(name_or_path: str) -> Assignment:
    """An assignment by name (a folder under ``assignments/``) or by path."""
    candidate = Path(name_or_path)
    if candidate.exists():
        return load_assignment(candidate)
    by_name = ASSIGNMENTS_DIR / name_or_path
    if by_name.is_dir():
        return load_assignment(by_name)
    known = sorted(p.name for p in ASSIGNMENTS_DIR.glob("*/assignment.yaml") for p in [p.parent])
    raise AssignmentError(f"unknown assignment {name_or_path!r}",
                          hint=f"known assignments: {', '.join(known) or 'none'}; or pass a folder path")
