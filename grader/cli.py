"""The ``grader`` command: one error boundary around the commands of ``grader/commands/``.

Expected failures (``GraderError``) print ``grader: error: ...`` and ``hint: ...`` and exit with
their status; anything else is a bug of the grader: a one-line message, and the traceback only
with ``--traceback`` (for staff). No raw traceback ever reaches a student.
"""

from __future__ import annotations

import importlib
import sys
import traceback

import click

from grader import __version__
from grader.errors import ExitStatus, GraderError

# name -> module of grader/commands/ whose ``command`` it is. Imported only when run (or listed by
# --help): `grader check` must not pay for the Docker SDK, the exporters or the batch machinery.
COMMANDS = {"check": "check", "grade": "grade", "batch": "batch", "export": "export",
            "gradescope-autograder": "gradescope_autograder", "bundle": "bundle",
            "expectations": "expectations", "image": "image", "worker": "worker"}
OPTIONAL = {"image"}  # needs more than the core (the Docker SDK): hidden when that is missing


class LazyGroup(click.Group):
    """click's documented lazy-loading group: a command's module is imported when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(n for n in COMMANDS if self._load(n) is not None)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        try:
            module = importlib.import_module(f"grader.commands.{COMMANDS[name]}")
        except ImportError:
            if name in OPTIONAL:
                return None
            raise
        return module.command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="grader")
@click.option("--traceback", "show_traceback", is_flag=True, help="show the full traceback of internal errors")
@click.pass_context
def cli(ctx: click.Context, show_traceback: bool) -> None:
    """autograd-lab grader: grade "Autograd From Scratch" submissions against torch.autograd.

    \b
    Students:  grader check [PATH]                 public tests, readable feedback
    TAs:       grader grade SUBMISSION -o r.json   public + hidden tests in a sandbox
               grader export gradescope r.json     LMS and CI formats
    """
    ctx.obj = {"traceback": show_traceback}


def main(argv: list[str] | None = None) -> int:
    show_traceback = "--traceback" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="grader", standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else ExitStatus.INTERNAL
    except click.exceptions.Abort:
        click.echo("grader: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return ExitStatus.USAGE
    except GraderError as exc:
        click.echo(f"grader: error: {exc}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        click.echo("grader: interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one boundary
        if show_traceback:
            traceback.print_exc()
        click.echo(f"grader: internal error: {type(exc).__name__}: {exc}", err=True)
        click.echo("hint: this is a bug of the grader; rerun with --traceback and report it to the course staff",
                   err=True)
        return int(ExitStatus.INTERNAL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
