"""Where the studio keeps its files: ``STUDIO_HOME`` (default ``~/.cache/tuning-studio``) holds models/, runs/ and exports/."""

from __future__ import annotations

import os
from pathlib import Path


def studio_home() -> Path:
    return Path(os.environ.get("STUDIO_HOME") or Path.home() / ".cache" / "tuning-studio").expanduser()


def prepare_home() -> Path:
    """Create ``STUDIO_HOME`` readable by its owner only (0700): it holds runs, uploads, datasets and logins, and a
    folder others cannot enter protects every file in it, whatever mode a library gave the file."""
    home = studio_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if home.stat().st_uid == os.getuid() and home.stat().st_mode & 0o077:
            home.chmod(0o700)
    except (OSError, AttributeError):  # not ours, or no getuid (Windows): leave it as the owner set it
        pass
    return home


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
