"""The data studio's find-and-replace pattern, bounded in size and time, because it runs in the UI process.

A regular expression such as ``(a+)+$`` on a long line backtracks for hours; Python's ``re`` cannot be interrupted.
The ``regex`` package (installed with transformers) takes a ``timeout``: every search gets what is left of one time
budget for the whole replacement, and releases the GIL meanwhile (``concurrent=True``) so other users' pages keep
answering. The replacement text may grow one value by at most ``MAX_GROWTH`` characters (a pattern that matches the
empty string inserts it between every character).

    pattern = compile_find("{{NAME}}", "Nova", regex=False)
    new_text, count = pattern.subn(lambda m: "Nova", text)    # DataError past a limit
"""

from __future__ import annotations

import time

import regex as rx

from studio.engine.data.textfile import MAX_ROW_BYTES, DataError

MAX_PATTERN_CHARS = 1000
MAX_REPLACEMENT_CHARS = 10_000
TIME_BUDGET_S = 5.0  # regex time for one whole replacement (every row); a plain replacement takes milliseconds
MAX_GROWTH = MAX_ROW_BYTES  # characters the replacements may add to one value


class BoundedPattern:
    """A compiled pattern whose ``subn`` raises DataError when the time budget or the growth limit is spent."""

    def __init__(self, compiled, find: str, budget_s: float | None = None):
        self.budget = TIME_BUDGET_S if budget_s is None else budget_s
        self.compiled, self.find, self.left = compiled, find, self.budget

    def subn(self, repl, text: str) -> tuple[str, int]:
        added = 0

        def counted(match):
            nonlocal added
            out = repl(match) if callable(repl) else repl
            added += len(out) - (match.end() - match.start())
            if added > MAX_GROWTH:
                raise _TooBig
            return out

        start = time.perf_counter()
        try:
            return self.compiled.subn(counted, text, timeout=max(self.left, 0.001), concurrent=True)
        except TimeoutError:
            raise DataError(f"find {_short(self.find)}: the pattern took over {self.budget:g} s (a pattern such as "
                            "(a+)+$ backtracks without end); simplify it; nothing was saved") from None
        except _TooBig:
            raise DataError(f"find {_short(self.find)}: the replacements would add over {MAX_GROWTH / 2**20:g} MB to one "
                            "value (does the pattern match empty text?); nothing was saved") from None
        finally:
            self.left -= time.perf_counter() - start


class _TooBig(Exception):
    pass


def _short(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")


def compile_find(find: str, replace: str, regex: bool = False, case_sensitive: bool = True) -> BoundedPattern:
    """``find`` as a literal (or, with ``regex``, a regular expression); DataError for an empty, too long or invalid one."""
    if not find:
        raise DataError("nothing to find: give the text to replace")
    if len(find) > MAX_PATTERN_CHARS:
        raise DataError(f"find: {len(find):,} characters, over the {MAX_PATTERN_CHARS:,}-character limit for a pattern")
    if len(replace) > MAX_REPLACEMENT_CHARS:
        raise DataError(f"replace: {len(replace):,} characters, over the {MAX_REPLACEMENT_CHARS:,}-character limit")
    flags = rx.VERSION0 | (0 if case_sensitive else rx.IGNORECASE)  # VERSION0: the syntax of Python's re
    try:
        compiled = rx.compile(find if regex else rx.escape(find), flags)
    except (rx.error, ValueError, RecursionError) as exc:
        raise DataError(f"find {_short(find)}: not a valid regular expression ({exc})") from None
    return BoundedPattern(compiled, find)
