"""Where the studio keeps its files: ``STUDIO_HOME`` (default ``~/.cache/tuning-studio``) holds models/, runs/ and exports/."""

from __future__ import annotations

import os
from pathlib import Path


def studio_home() -> Path:
    return Path(os.environ.get("STUDIO_HOME") or Path.home() / ".cache" / "tuning-studio").expanduser()


def runs_dir(override: str | os.PathLike | None = None) -> Path:
    return Path(override).expanduser() if override else studio_home() / "runs"


def models_dir() -> Path:
    return studio_home() / "models"


def exports_dir() -> Path:
    """Where the Export tab saves by default and where the Chat tab looks for exported models."""
    return studio_home() / "exports"


def repo_root() -> Path:
    """The checkout (or installed package parent) holding presets/ and assets/."""
    return Path(__file__).resolve().parent.parent


def presets_dir() -> Path:
    return repo_root() / "presets"


def assets_dir() -> Path:
    return repo_root() / "assets"
