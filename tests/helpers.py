"""Helpers the test tiers share: writing dataset files, and waiting for a condition with a clear failure.

Import them as ``from tests.helpers import wait_until, write_jsonl, write_rows`` (conftest puts the checkout on sys.path).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

# what a test studio's page may use besides $STUDIO_HOME: the temp folder that holds every test's files and models
# (security tests name paths outside it, such as /etc or the home folder, to check they are refused)
TEST_ROOTS = (Path(tempfile.gettempdir()),)


def web_context(runs_root: Path, start_jobs: bool = False):
    """The studio's AppContext as a test page gets it: confined to $STUDIO_HOME and the test temp folder, no code."""
    from studio.ui.context import AppContext

    return AppContext.create(runs_root=runs_root, start_jobs=start_jobs, allow_paths=TEST_ROOTS)


def stop_process(proc, timeout: float = 20) -> None:
    """Terminate a child the test started (SIGTERM, then SIGKILL after ``timeout`` s) and reap it."""
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(pred: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Call ``pred`` until it returns something truthy, and return that; fail the test naming ``what`` after ``timeout``
    seconds. An exception raised by ``pred`` propagates at once (a broken condition is not a slow one)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Rows in the file type the suffix names: .jsonl, .json, .csv, else Parquet."""
    import pandas as pd

    if path.suffix == ".jsonl":
        return write_jsonl(path, rows)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    elif path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path)
    return path
