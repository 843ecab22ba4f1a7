"""The `lionflow` command (also `python -m lionflow`). Each command lives in a module of its own
that registers its sub-parser (`add_parser`) with a ``run`` handler."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lionflow.cli import _chat, _compare, _demo, _run, _serve, _sessions
from lionflow.cli._text import one_line
from lionflow.errors import LionflowError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lionflow", description="lionflow command-line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in (_demo, _serve, _run, _chat, _compare, _sessions):
        command.add_parser(commands)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except LionflowError as error:
        print(f"lionflow: {one_line(str(error))}", file=sys.stderr)  # it may quote a server's text
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say, and nowhere to say it; stdout is
        # pointed at devnull so that the interpreter's last flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
