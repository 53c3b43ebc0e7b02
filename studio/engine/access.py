"""Who may touch what: the access policy that every engine function reachable from the web takes.

The CLI runs as its user and may read and write whatever that user may (``FULL``). The web UI and its HTTP API answer
anything that can send a request to the studio, and the browser calls every event handler over HTTP with arguments of its
choosing, so the page gets a confined policy (``Access.web``):

- every path it names must resolve (symlinks followed, ``..`` folded) under an allowed root: ``$STUDIO_HOME``, the studio's
  own ``assets/`` and ``presets/``, a ``data/`` folder in the folder the studio was started in, and folders the owner added
  with ``--allow-path`` (never the whole working folder: started from a home folder, that would open ``~/.ssh``);
- names it gives (a mix, a dataset copy, an upload) become slugs;
- code runs only when the owner started the studio with ``--allow-code``: custom metric files from ``$STUDIO_HOME/metrics/``,
  ``model.trust_remote_code``, and a run across machines (``distributed.num_machines`` > 1: its peers talk unauthenticated
  torch.distributed, pickles included, and the checks before it open connections to the address the page names).

Engine functions that a web handler calls take ``access`` as a required keyword argument, so no handler can forget it; the
CLI passes ``FULL``. A refusal is an ``AccessError`` (a ``PermissionError``) naming the value, what it was for and the rule.
Pure standard library (and studio.config).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from studio.config import resolve_dataset_path

# a Hugging Face hub id ("org/name" or "name"); anything else is a local path
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
_SPEC_TAIL = re.compile(r"^(.*?)((?:#[^#@/]*)?(?:@\d+)?)$")


class AccessError(PermissionError):
    """A web caller asked for something outside what the studio's owner allowed; the message says what and why."""


def slug(name: str, what: str = "name", max_len: int = 64) -> str:
    """A file-system-safe name: letters, digits, '.', '_' and '-' only, no leading dot; AccessError when nothing is left."""
    text = re.sub(r"[^\w.-]+", "-", str(name or ""), flags=re.ASCII).strip("-.")[:max_len].strip("-.")
    if not text:
        raise AccessError(f"{what} {name!r}: use letters, digits, '.', '_' or '-'")
    return text


@dataclass(frozen=True)
class Access:
    """``roots`` None: anywhere (the CLI). ``allow_code``: custom metrics and trust_remote_code may run."""

    roots: tuple[Path, ...] | None = None
    allow_code: bool = True
    metrics_dir: Path | None = None

    @classmethod
    def web(cls, home: Path, repo: Path, cwd: Path, extra: tuple = (), allow_code: bool = False) -> "Access":
        roots = (Path(home), Path(repo) / "assets", Path(repo) / "presets", Path(cwd) / "data", *map(Path, extra))
        return cls(roots=tuple(_real(r) for r in roots), allow_code=allow_code, metrics_dir=_real(Path(home) / "metrics"))

    @property
    def confined(self) -> bool:
        return self.roots is not None

    # -- paths -------------------------------------------------------------------------------------------------------------

    def path(self, value: str | Path, what: str) -> Path:
        """``value`` as a resolved path, refused when it lies outside every allowed root."""
        text = str(value or "").strip()
        if not text or "\0" in text:
            raise AccessError(f"{what}: {value!r} is not a path")
        if not self.confined:
            return Path(text).expanduser()
        real = _real(Path(text))  # no "~": the page names paths as the server sees them
        if not any(real == root or root in real.parents for root in self.roots):
            raise AccessError(f"{what} {text!r}: outside the folders the studio may use from the web "
                              f"({', '.join(map(str, self.roots))}); the owner can add one with --allow-path")
        return real

    def optional_path(self, value: str | Path | None, what: str) -> str:
        """'' stays '' (the caller's default applies); anything else must pass ``path``."""
        return "" if not str(value or "").strip() else str(self.path(value, what))

    def spec(self, spec: str, what: str = "dataset") -> str:
        """A dataset spec ``PATH[#ENTRY][@MAX]`` whose PATH passes ``path``; returned with PATH resolved. A relative PATH
        means what it means in a config: the working folder, then the checkout (``assets/data``)."""
        m = _SPEC_TAIL.match(resolve_dataset_path(str(spec or "").strip(), None))
        raw, tail = (m.group(1), m.group(2)) if m else (str(spec), "")
        return str(self.path(raw, what)) + tail

    def model(self, name: str, what: str = "model") -> str:
        """'default', a hub id that names no local folder, or a local folder that passes ``path``."""
        text = str(name or "").strip() or "default"
        if text == "default" or not self.confined:
            return text
        if _HUB_ID.match(text) and not Path(text).exists():
            return text
        return str(self.path(text, what))

    def chat_template(self, value: str) -> str:
        """``model.chat_template`` is a template text, or the path of a .jinja file (which must pass ``path``)."""
        text = str(value or "")
        if text.strip().endswith(".jinja") and "\n" not in text and "{" not in text:
            return str(self.path(text.strip(), "model.chat_template"))
        return text

    # -- code --------------------------------------------------------------------------------------------------------------

    def code(self, what: str) -> None:
        if not self.allow_code:
            raise AccessError(f"{what}: runs code on this machine, and this studio was started without --allow-code "
                              "(the CLI may always; from the web only when the owner allows it)")

    def metric(self, spec: str) -> str:
        """A custom metric ``FILE.py:FUNCTION``: code, so ``--allow-code``; from the web its file must be in the metrics folder."""
        self.code(f"custom metric {spec!r}")
        if not self.confined:
            return spec
        file, sep, func = str(spec).rpartition(":")
        if not sep or not func:
            raise AccessError(f"custom metric {spec!r}: expected FILE.py:FUNCTION")
        real = _real(Path(file))
        if self.metrics_dir is None or real.parent != self.metrics_dir:
            raise AccessError(f"custom metric {spec!r}: from the web only files in {self.metrics_dir} may run")
        return f"{real}:{func}"

    # -- a whole run config ------------------------------------------------------------------------------------------------

    def config(self, cfg) -> None:
        """Every path and code option of a RunConfig (model, chat template, datasets, runs folder, reward model)."""
        cfg.model.name_or_path = self.model(cfg.model.name_or_path, "model.name_or_path")
        cfg.model.chat_template = self.chat_template(cfg.model.chat_template)
        if cfg.model.trust_remote_code:
            self.code("model.trust_remote_code")
        cfg.data.datasets = [self.spec(d, "data.datasets") for d in cfg.data.datasets]
        cfg.output.runs_dir = self.optional_path(cfg.output.runs_dir, "output.runs_dir")
        cfg.rl.reward_model = self.optional_path(cfg.rl.reward_model, "rl.reward_model")
        if cfg.distributed.num_machines > 1:  # torch.distributed peers are not authenticated and exchange pickles
            self.code(f"distributed.num_machines={cfg.distributed.num_machines} (the machines of a run accept "
                      "unauthenticated torch.distributed peers, which exchange pickled objects)")


FULL = Access()


def _real(path: Path) -> Path:
    """Absolute, symlinks followed, ``..`` folded (for a path that does not exist yet: its existing part resolved)."""
    return Path(path).absolute().resolve(strict=False)
