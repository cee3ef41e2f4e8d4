"""The `videopoet` command. Subcommands parse their options and delegate; the work lives in the package.

A user error (bad path, bad option, unreadable file: any `UserError`) prints one line on stderr and exits
with status 2; `--debug` shows the traceback instead. A package that does not import prints the doctor's
line for it and exits 2. Heavy modules are imported inside the handlers (`commands`) so `videopoet --help`,
`--version` and `doctor` work fast, and work even when torch or torchaudio is broken.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from videopoet.cli.commands import EXIT_USER_ERROR
from videopoet.cli.parser import build_parser
from videopoet.errors import UserError

__all__ = ["EXIT_USER_ERROR", "build_parser", "main"]

# Errors of the environment a user can fix (a wrong path, a folder without permission) count as user
# errors at the command line; every other exception is a bug and keeps its traceback.
_USER_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    given = list(argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    args = build_parser().parse_args(argv)
    args.argv = given  # what a command that relaunches itself on several ranks passes on
    try:
        args.func(args)
    except (UserError, *_USER_OS_ERRORS) as e:
        if debug:
            traceback.print_exc()
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"videopoet: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (ImportError, OSError) as e:
        # A package that does not import (torchaudio built for another torch, a missing PyAV) is the
        # environment's fault: the doctor names it in one line. Anything else is a bug.
        from videopoet.doctor import import_failure_line

        line = import_failure_line(e)
        if line is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"videopoet: error: {line} (run `videopoet doctor` for every check)", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("videopoet: interrupted", file=sys.stderr)
        return 130
    return 0
