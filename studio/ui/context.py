"""``AppContext``: the process-wide things every tab shares, created once by ``app.main`` and passed to each tab's build.

It holds the job manager (the training queue), where runs/presets/uploads live, the access policy of the page (what paths
it may name, whether it may run code: ``studio.engine.access``), the default UI language, and a small cache
of loaded chat models and tokenizers (loading the default model costs seconds, so two users or two clicks share a copy).
Per-user things never live here: they are ``gr.State`` values in the page.

Torch/transformers are imported only inside the loaders, when a tab first needs a model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from studio import paths
from studio.engine.access import Access
from studio.engine.arena import Arena
from studio.engine.jobs.training import JobManager

MAX_CHAT_MODELS = 2  # each ChatModel holds a base copy; CPU RAM is the limit on a laptop


@dataclass
class AppContext:
    runs_root: Path
    presets_root: Path
    uploads_root: Path
    jobs: JobManager
    access: Access = field(default_factory=lambda: Access(roots=()))  # nothing at all until create() says what
    lang: str = "en"
    data_roots: tuple[Path, ...] = ()
    _models: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _tokenizers: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # one generation at a time per process: a PEFT model switches its adapter on/off globally while it generates
    generate_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _arena: Arena | None = field(default=None, repr=False)

    @classmethod
    def create(cls, lang: str = "en", runs_root: Path | None = None, start_jobs: bool = True, allow_paths: tuple = (),
               allow_code: bool = False) -> "AppContext":
        """The studio's context. The page may use $STUDIO_HOME, assets/, presets/, ./data, the runs folder and
        ``allow_paths`` (``--allow-path``), and runs code only with ``allow_code`` (``--allow-code``)."""
        root = Path(runs_root) if runs_root else paths.runs_dir()
        jobs = JobManager(root)
        access = Access.web(paths.studio_home(), paths.repo_root(), Path.cwd(), extra=(root, *allow_paths),
                            allow_code=allow_code)
        ctx = cls(runs_root=root, presets_root=paths.presets_dir(), uploads_root=paths.studio_home() / "uploads",
                  jobs=jobs, access=access, lang=lang, data_roots=(Path.cwd() / "data",))
        if start_jobs:
            jobs.recover()
            jobs.start()
        return ctx

    def close(self) -> None:
        self.jobs.close()

    # -- presets ----------------------------------------------------------------------------------------------------------

    def presets(self) -> dict[str, Path]:
        """Preset name (file stem) -> path, sorted by name."""
        if not self.presets_root.is_dir():
            return {}
        return {p.stem: p for p in sorted(self.presets_root.glob("*.yaml"))}

    def preset_description(self, path: Path) -> str:
        """The leading comment block of a preset file (presets document themselves in a header comment)."""
        lines = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            lines.append(line.lstrip("#").strip())
        return " ".join(x for x in lines if x)

    # -- datasets ---------------------------------------------------------------------------------------------------------

    def dataset_roots(self) -> list[Path]:
        """Where the pickers look: the shipped demo datasets, ./data, uploads."""
        return [paths.repo_root() / "assets" / "data", *self.data_roots, self.uploads_root]

    def dataset_choices(self, lang: str | None = None) -> list[tuple[str, str]]:
        """(label, spec) of every dataset a newcomer can pick: the shipped demo sets and every dataset_info.json entry
        under the data folders, files, uploads and editable copies, each with its row count (engine/data/catalog.py)."""
        from studio.engine.data.catalog import count_rows, list_datasets
        from studio.engine.data.workspace import list_workspaces
        from studio.ui.i18n import t

        lang = lang or self.lang
        items = list_datasets(self.dataset_roots())
        for folder in list_workspaces():
            data = next((f for f in folder.glob("data.*") if f.is_file()), None)
            items.append({"spec": str(folder), "name": folder.name, "kind": "", "rows": count_rows(data) if data else None})
        return [(t("data.rows_n", lang, name=i["name"], fmt=i["kind"] or "-", n="?" if i["rows"] is None else
                   f"{i['rows']:,}"), i["spec"]) for i in items]

    def dataset_files(self) -> list[str]:
        """Dataset files the Data tab offers: data/ folders (repo and cwd) and uploads."""
        from studio.engine.data.formats import SUFFIXES  # pure Python: no torch, no pandas at import

        found: dict[str, None] = {}
        for root in (*self.data_roots, self.uploads_root):
            if root.is_dir():
                for p in sorted(root.rglob("*")):
                    if p.suffix.lower() in SUFFIXES and p.name != "dataset_info.json" and p.is_file():
                        found[str(p)] = None
        return list(found)

    # -- model caches -----------------------------------------------------------------------------------------------------

    def chat_model(self, model: str, adapter: str | None):
        """A cached ``ChatModel`` for (model, adapter); the least recently used one is dropped beyond MAX_CHAT_MODELS."""
        key = (model.strip() or "default", (adapter or "").strip() or None)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        from studio.engine.generate import open_chat  # torch/transformers load here, on first use

        loaded = open_chat(key[0], key[1], access=self.access)
        with self._lock:
            self._models[key] = loaded
            while len(self._models) > MAX_CHAT_MODELS:
                self._models.popitem(last=False)
        return loaded

    def compare(self, model: str, adapter: str, messages_base: list[dict], messages_tuned: list[dict], temperature: float,
                top_p: float, max_new_tokens: int):
        """Stream (base_text, tuned_text): first the base answer grows (tuned None), then the tuned one (with an adapter).
        One generation at a time in this process (the Chat tab and the ``/chat_compare`` endpoint share it)."""
        cm = self.chat_model(model, adapter or None)
        kw = dict(temperature=float(temperature), top_p=float(top_p), max_new_tokens=int(max_new_tokens))
        with self.generate_lock:
            base = ""
            for base in cm.stream(messages_base, use_adapter=False, **kw):
                yield base, None
            if not adapter:
                return
            for tuned in cm.stream(messages_tuned, use_adapter=True, **kw):
                yield base, tuned

    @property
    def arena(self) -> Arena:
        """The arena's models and the rounds waiting for a vote (shares the one-generation-at-a-time lock)."""
        with self._lock:
            if self._arena is None:
                self._arena = Arena(self.generate_lock)
            return self._arena

    def tokenizer(self, model: str):
        """A cached tokenizer (the Data tab renders rows through its chat template)."""
        name = model.strip() or "default"
        with self._lock:
            if name in self._tokenizers:
                return self._tokenizers[name]
        from studio.engine.models import open_tokenizer

        tok = open_tokenizer(name, access=self.access)
        with self._lock:
            self._tokenizers[name] = tok
        return tok
