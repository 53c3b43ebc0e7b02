"""The web side's limits, declared once: the ranges the page's sliders show and the API endpoints check, the request
queue's length, upload size and count, how long gradio's upload cache keeps files, and the login rules.

A slider reads its range with ``gr.Slider(**RANGES["max_new_tokens"].slider(), value=...)``; an endpoint checks its
arguments with ``check(max_new_tokens=..., batch_size=...)``, which raises ``OutOfRange`` naming the argument and its
allowed range. This module imports nothing heavy (no gradio), so the CLI and tests can read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    minimum: float
    maximum: float
    step: float
    integer: bool = False

    def slider(self) -> dict:
        """The ``gr.Slider`` keyword arguments for this range."""
        return dict(minimum=self.minimum, maximum=self.maximum, step=self.step)

    def problem(self, name: str, value) -> str | None:
        """Why ``value`` is not allowed for ``name`` (None when it is)."""
        allowed = f"allowed {self.minimum:g} to {self.maximum:g}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name}={value!r} is not a number ({allowed})"
        if self.integer and not float(value).is_integer():
            return f"{name}={value!r} must be a whole number ({allowed})"
        if math.isnan(value) or not self.minimum <= value <= self.maximum:
            return f"{name}={value!r} is out of range ({allowed})"
        return None


# the ranges a person can pick in the page; the API takes no more than the page does
RANGES: dict[str, Range] = {
    "max_new_tokens": Range(1, 2048, 1, integer=True),
    "temperature": Range(0.0, 2.0, 0.05),
    "top_p": Range(0.05, 1.0, 0.05),
    "batch_size": Range(1, 128, 1, integer=True),
    "changed_rows": Range(0, 1000, 1, integer=True),
}


class OutOfRange(ValueError):
    """An argument outside its range in ``RANGES``; the message names each one and its allowed range."""


def check(**values) -> None:
    """Raise ``OutOfRange`` naming every argument (a key of ``RANGES``) whose value is outside its range."""
    problems = [p for name, value in values.items() if (p := RANGES[name].problem(name, value))]
    if problems:
        raise OutOfRange("; ".join(problems))


QUEUE_MAX = 64  # events waiting at once; beyond it gradio answers "Queue is full. Max size is 64" (HTTP 503)
MAX_FILE_SIZE = "500mb"  # per uploaded file; beyond it gradio answers 413 naming the limit in bytes
MAX_FILES_PER_UPLOAD = 8  # parts per upload request (the page sends one file at a time; gradio itself allows 1000)
UPLOAD_CACHE = (3600, 86400)  # gradio's upload cache: every hour, delete files older than a day (the Data tab keeps a copy)

MIN_PASSWORD = 8  # characters in an --auth / STUDIO_AUTH password
LOGIN_FAILURES = 5  # failed logins from one client address within LOGIN_WINDOW_S ...
LOGIN_WINDOW_S = 60.0
LOGIN_LOCKOUT_S = 60.0  # ... lock it out (HTTP 429) for this long
