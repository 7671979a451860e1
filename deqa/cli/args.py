"""What the console commands share in argument parsing: exit code 1 for a bad argument (2 means
"some inputs failed" in deqa-score, deqa-eval and deqa baseline), bounded number types, and
deqa's own warnings printed as one plain line."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator

__all__ = ["Parser", "EXIT_ERROR", "int_at_least", "positive_float", "non_negative_float", "fraction", "plain_warnings"]

EXIT_ERROR = 1


class Parser(argparse.ArgumentParser):
    # argparse exits 2 on a bad argument, which these commands use for "some inputs failed".
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def int_at_least(minimum: int, note: str = "") -> Callable[[str], int]:
    """An argparse type: an int >= ``minimum`` (``note`` says what the bound means, e.g. "0 = no limit")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{f' ({note})' if note else ''}, got {value}")
        return value

    return parse


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None


def positive_float(text: str) -> float:
    """An argparse type: a finite float > 0 (a learning rate, a step)."""
    value = _float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def fraction(*, upper_inclusive: bool) -> Callable[[str], float]:
    """An argparse type: a share in [0, 1], or in [0, 1) without ``upper_inclusive``."""

    def parse(text: str) -> float:
        value = _float(text)
        if not (0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0):
            raise argparse.ArgumentTypeError(f"must be in [0, 1{']' if upper_inclusive else ')'}, got {text}")
        return value

    return parse


def non_negative_float(text: str) -> float:
    """An argparse type: a finite float >= 0 (a std)."""
    value = _float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


@contextlib.contextmanager
def plain_warnings(prog: str, category: type[Warning] = UserWarning, *, always: bool = False) -> Iterator[None]:
    """While the block runs, warnings of ``category`` (deqa's: a torn last line redone, a fit that
    fell back to a line, a config key set but unused) print as one line ``prog: warning: ...`` when
    they happen, not in Python's "file:line: UserWarning" form; others as Python shows them.
    ``always``: every one, also a repeat from the same place."""
    with warnings.catch_warnings():  # restores the filters and showwarning after
        if always:
            warnings.simplefilter("always", category)
        show = warnings.showwarning

        def plain(message, kind, filename, lineno, file=None, line=None):
            if issubclass(kind, category):
                print(f"{prog}: warning: {message}", file=sys.stderr)
            else:
                show(message, kind, filename, lineno, file, line)

        warnings.showwarning = plain
        yield
