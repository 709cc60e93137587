"""What every `fastgd` command shares: argparse number types, and how a command runs.

A problem the user can fix (a missing file, an unknown column, a bad learning rate, a
diverging run) is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings


def number(accepts: str, ok, convert=float, words=None):
    """An argparse type: a number (`convert`) for which ok(value) holds, or one of the
    `words` (text -> value); else the usage error "takes <accepts>, got ..."."""
    def parse(text):
        if words and text in words:
            return words[text]
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"takes {accepts}, got {text!r}")
        return value
    return parse


positive_int = number("a whole number > 0", lambda v: v > 0, int)


def parser(prog: str, description: str, **kwargs) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description, **kwargs)


def run(prog: str, command, args, words=lambda message: message) -> int:
    """command(args), with what the user can fix as one line `prog: error: ...` on stderr
    (exit status 2; `words` rewrites a message into the command's terms), warnings as
    `prog: warning: ...`, a closed pipe as status 1 and Ctrl-C as 130."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_: print(
            f"{prog}: warning: {one_line(message, words)}", file=sys.stderr)
        try:
            status = command(args)
        except BrokenPipeError:  # e.g. `fastgd predict ... | head`: the reader has gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except (ValueError, OSError, ImportError) as error:  # DivergenceError is a ValueError
            print(f"{prog}: error: {one_line(error, words)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
    return status or 0


def one_line(error, words=lambda message: message) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.strerror}: {error.filename!r}"
    if isinstance(error, ModuleNotFoundError):
        return f"{error}; the command line needs pip install 'fastgd[cli]'"
    return words(" ".join(str(error).split()))
