"""Saving an uploaded dataset file under the uploads folder without ever replacing one that is there.

    from studio.engine.data.uploads import save_upload
    path = save_upload("/tmp/gradio/abc/train.jsonl", paths.studio_home() / "uploads", "train.jsonl")
    # uploads/train.jsonl, or uploads/train-1.jsonl, train-2.jsonl ... when that name is taken

A queued or finished run names its dataset by path, so replacing an uploaded file would make it train on other rows:
an upload always gets a name of its own. The bytes go to a private temp file first (created with O_EXCL, mode 0600,
fsynced), which is then hard-linked to the first free name (``link`` never replaces a file, and the file appears whole);
where the filesystem has no hard links the free name is created with O_EXCL and written. No torch, no gradio.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

from studio.engine.data.formats import SUFFIXES, DataError

MAX_STEM = 80  # characters kept of the uploaded file's name
MAX_TRIES = 10_000  # name, name-1 ... name-9999: more is a broken folder, not a busy one
NO_LINK = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


def upload_name(original_name: str) -> tuple[str, str]:
    """(stem, suffix) of a safe file name for an upload: the base name only, letters, digits, CJK, ``_.-``."""
    base = Path(str(original_name or "").replace("\\", "/")).name
    suffix = Path(base).suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{original_name}: unsupported file type '{suffix or '(none)'}' (upload {', '.join(SUFFIXES)})")
    stem = re.sub(r"[^A-Za-z0-9_.\-\u4e00-\u9fff]+", "_", base[: -len(suffix)]).strip("._-")[:MAX_STEM]
    return stem or "upload", suffix


def save_upload(src: str | os.PathLike, uploads_root: str | os.PathLike, original_name: str = "") -> Path:
    """Copy ``src`` into ``uploads_root`` under a new name from ``original_name`` (default: ``src``'s); returns the path.

    Never replaces a file: a taken name gets ``-1``, ``-2``, ... The file is readable by its owner only (0600). A full
    disk is a DataError naming the upload; nothing is left behind.
    """
    src = Path(src)
    stem, suffix = upload_name(original_name or src.name)
    root = Path(uploads_root)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=root)  # O_EXCL, 0600
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
            out.flush()
            os.fsync(out.fileno())
        return _claim(tmp, root, stem, suffix)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(f"{original_name or src.name}: disk full while saving the upload in {root}: nothing was "
                            "saved") from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _claim(tmp: Path, root: Path, stem: str, suffix: str) -> Path:
    """Give ``tmp``'s bytes the first free name: ``stem``, ``stem-1``, ... (a hard link fails rather than replace)."""
    for k in range(MAX_TRIES):
        dest = root / f"{stem}{f'-{k}' if k else ''}{suffix}"
        try:
            os.link(tmp, dest)
            return dest
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in NO_LINK:
                raise
        if _create_copy(tmp, dest):
            return dest
    raise DataError(f"{root}: {stem}{suffix} and {MAX_TRIES - 1} numbered copies exist; rename the file and upload again")


def _create_copy(tmp: Path, dest: Path) -> bool:
    """Without hard links: create ``dest`` with O_EXCL (False when taken) and copy into it; removed again on failure."""
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as out, open(tmp, "rb") as inp:
            shutil.copyfileobj(inp, out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        dest.unlink(missing_ok=True)  # ours: made by the O_EXCL open above
        raise
    return True
