"""Expected failures of the grader, as exceptions whose text is the user's message.

One error boundary (the CLI) prints ``grader: error: <message>`` and ``hint: <hint>``
and maps the exception to an exit status; no raw traceback reaches a student.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    TESTS_FAILED = 1
    USAGE = 2
    BAD_SUBMISSION = 3
    BAD_ASSIGNMENT = 4
    SANDBOX = 5
    INTERNAL = 70


class GraderError(Exception):
    """An expected failure: ``str(err)`` is shown to the user as is."""

    exit_status: ExitStatus = ExitStatus.INTERNAL

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class SubmissionError(GraderError):
    """The submission cannot be graded as given (missing file, bad zip, syntax error...).

    ``code`` is a stable machine-readable tag written into reports (e.g. ``missing-file``).
    """

    exit_status = ExitStatus.BAD_SUBMISSION

    def __init__(self, message: str, code: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


class AssignmentError(GraderError):
    """The assignment's configuration is unknown or invalid."""

    exit_status = ExitStatus.BAD_ASSIGNMENT


class SandboxError(GraderError):
    """The sandbox could not be started or broke down (Docker unreachable, image missing)."""

    exit_status = ExitStatus.SANDBOX
