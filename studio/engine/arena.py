"""The arena: up to four models answer the same prompt side by side, optionally blind; each vote becomes preference pairs.

    arena = Arena()
    sides = [contender("base", "default", access=FULL), contender("runs/R/adapter", "default", access=FULL)]
    rnd = arena.play(sides, "Who are you?", blind=True)          # answers in a shuffled order: A, B, ...
    arena.vote(rnd.id, "A", better="", dataset="arena_votes")    # reveal + pairs appended to the dataset

A vote names the best side (``A``..``D``), ``tie`` or ``bad`` (all bad), and may carry a better answer the user wrote.
Pairs written: chosen = the better answer when given, else the best side's answer; rejected = every other shown answer
(with a better answer: every shown answer that differs from it). A tie or "all bad" without a better answer writes no
pair but still counts for the win rates. The pairs go to a data workspace (``$STUDIO_HOME/datasets/<dataset>``: an
editable copy with versions, one version per vote, which the Data tab opens and DPO trains on); every vote, pairs or not,
is appended to ``$STUDIO_HOME/arena/<dataset>.votes.jsonl``, from which ``win_rates`` counts, per pair of models, the
votes, wins, ties and "both bad" (a tie and "both bad" count half a win each, as in Chatbot Arena).

Models load (torch) on the first round, through ``studio.engine.generate.ChatModel``: each tuned contender is one
ChatModel (a LoRA is attached to its own base copy; a merged folder or GGUF is a model of its own), the base contender
reuses a loaded adapter's base with the adapter switched off. No torch at import.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from studio import config as C
from studio import paths
from studio.engine.access import Access, slug

MAX_MODELS = 4
SIDES = "ABCD"
VOTES = ("A", "B", "C", "D", "tie", "bad")
MAX_ROUNDS = 256  # rounds waiting for a vote, per process (the oldest is forgotten first)
MAX_PROMPT = 20_000  # characters of a prompt, a system prompt or a better answer
DEFAULT_DATASET = "arena_votes"
BASE = "base"  # the contender spec that means "the base model itself"


class ArenaError(ValueError):
    """A request the arena cannot serve (unknown round, bad vote, too many models); the message says what to fix."""


@dataclass(frozen=True)
class Contender:
    key: str      # stable identity in the votes log: "base:<model>" or the tuned path, resolved
    label: str    # what the reveal and the win-rate table show
    model: str    # the base model ('default', a folder, a hub id)
    adapter: str  # '' for the base model itself; else a run/adapter/merged folder or a .gguf file


def contender(spec: str, model: str = "default", *, access: Access) -> Contender:
    """``spec``: ``base`` (the base model ``model``) or a tuned path (run, adapter, merged folder, GGUF file), checked
    against ``access``; a tuned path's own base model (its run config or export.json) wins over ``model``."""
    from studio.engine.generate import base_model_of

    spec = str(spec or "").strip()
    model = access.model(model or "default", "arena base model")
    if spec in ("", BASE) or spec.startswith(f"{BASE}:"):
        name = spec.partition(":")[2].strip() or model
        name = access.model(name, "arena base model")
        return Contender(f"{BASE}:{name}", f"{BASE} ({_short(name)})", name, "")
    path = access.path(spec, "arena model")
    if not path.exists():
        raise ArenaError(f"arena model {spec!r}: no such folder or file")
    base = base_model_of(path, access=access) or model
    return Contender(str(path), _short(str(path)), base, str(path))


def _short(name: str) -> str:
    """'default', a hub id, or the last two parts of a path (``RUN/adapter``, ``gguf/model-q8_0.gguf``)."""
    p = Path(name)
    return name if not p.is_absolute() else "/".join(p.parts[-2:])


@dataclass
class Round:
    id: str
    prompt: str
    system: str
    sides: list[Contender]  # in the order shown: A, B, ...
    answers: list[str] = field(default_factory=list)
    blind: bool = True
    settings: dict = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    def public(self) -> dict:
        """What a client may see before voting: the answers by side, the models only when not blind."""
        return {"round_id": self.id, "answers": dict(zip(SIDES, self.answers)),
                "models": None if self.blind else self.reveal()}

    def reveal(self) -> dict:
        return {SIDES[i]: c.label for i, c in enumerate(self.sides)}


class Arena:
    """The process's arena: loaded models, rounds waiting for a vote. Thread-safe; one generation at a time."""

    def __init__(self, generate_lock: threading.Lock | None = None, max_models: int = MAX_MODELS):
        self.generate_lock = generate_lock or threading.Lock()
        self.max_models = max_models
        self._models: OrderedDict = OrderedDict()  # (model, adapter) -> ChatModel
        self._rounds: OrderedDict[str, Round] = OrderedDict()
        self._lock = threading.Lock()

    # -- models -----------------------------------------------------------------------------------------------------------

    def _chat(self, c: Contender):
        """(ChatModel, use_adapter) for a contender; the base reuses an adapter's base copy when one is loaded."""
        from studio.engine.generate import ChatModel

        with self._lock:
            if not c.adapter:
                for (model, _), cm in self._models.items():
                    if model == c.model and not cm.tuned_separate:
                        return cm, False
            key = (c.model, c.adapter)
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key], bool(c.adapter)
        cm = ChatModel(c.model, c.adapter or None)  # paths were checked by contender()
        with self._lock:
            self._models[key] = cm
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
        return cm, bool(c.adapter)

    # -- rounds -----------------------------------------------------------------------------------------------------------

    def start(self, sides: list[Contender], prompt: str, system: str = "", blind: bool = True,
              settings: dict | None = None, seed: int | None = None) -> Round:
        """A new round (no answers yet): the sides shuffled when blind."""
        prompt, system = str(prompt or "").strip(), str(system or "").strip()
        if not prompt:
            raise ArenaError("type a prompt first")
        if len(prompt) > MAX_PROMPT or len(system) > MAX_PROMPT:
            raise ArenaError(f"prompt and system prompt: at most {MAX_PROMPT} characters each")
        if not 2 <= len(sides) <= MAX_MODELS:
            raise ArenaError(f"pick 2 to {MAX_MODELS} models (got {len(sides)})")
        if len({c.key for c in sides}) != len(sides):
            raise ArenaError("the same model was picked twice")
        order = list(sides)
        if blind:
            random.Random(seed).shuffle(order)
        return Round(secrets.token_hex(8), prompt, system, order, blind=bool(blind), settings=dict(settings or {}))

    def stream(self, rnd: Round):
        """Generate every side's answer in turn, yielding the answers so far (a list, one per side) as tokens arrive;
        the round then waits for its vote."""
        messages = ([{"role": "system", "content": rnd.system}] if rnd.system else []) + [
            {"role": "user", "content": rnd.prompt}]
        rnd.answers = [""] * len(rnd.sides)
        kw = {k: rnd.settings[k] for k in ("temperature", "top_p", "max_new_tokens") if k in rnd.settings}
        with self.generate_lock:
            for i, c in enumerate(rnd.sides):
                cm, use_adapter = self._chat(c)
                for text in cm.stream(messages, use_adapter=use_adapter, **kw):
                    rnd.answers[i] = text
                    yield list(rnd.answers)
        self._keep(rnd)
        yield list(rnd.answers)

    def play(self, sides: list[Contender], prompt: str, system: str = "", blind: bool = True,
             settings: dict | None = None, seed: int | None = None) -> Round:
        rnd = self.start(sides, prompt, system, blind, settings, seed)
        for _ in self.stream(rnd):
            pass
        return rnd

    def _keep(self, rnd: Round) -> None:
        with self._lock:
            self._rounds[rnd.id] = rnd
            while len(self._rounds) > MAX_ROUNDS:
                self._rounds.popitem(last=False)

    def pending(self, round_id: str) -> Round:
        with self._lock:
            rnd = self._rounds.get(str(round_id or ""))
        if rnd is None:
            raise ArenaError(f"round {round_id!r}: unknown or already voted (rounds live until their vote, in this "
                             "process)")
        return rnd

    def vote(self, round_id: str, vote: str, better: str = "", dataset: str = DEFAULT_DATASET) -> dict:
        """Record the vote: pairs into the dataset, a line into the votes log; the round is consumed. Returns
        {reveal, vote, pairs, dataset, version, rows, log}."""
        rnd = self.pending(round_id)
        result = record_vote(rnd, vote, better, dataset)
        with self._lock:
            self._rounds.pop(rnd.id, None)
        return result


# -- votes -> preference pairs -----------------------------------------------------------------------------------------


def check_vote(rnd: Round, vote: str, better: str = "") -> tuple[str, str]:
    vote = str(vote or "").strip()
    allowed = [*SIDES[:len(rnd.sides)], "tie", "bad"]
    if vote not in allowed:
        raise ArenaError(f"vote {vote!r}: one of {', '.join(allowed)}")
    better = str(better or "").strip()
    if len(better) > MAX_PROMPT:
        raise ArenaError(f"better answer: at most {MAX_PROMPT} characters")
    return vote, better


def pairs_for(rnd: Round, vote: str, better: str = "") -> list[dict]:
    """The preference rows one vote makes (see the module docstring)."""
    vote, better = check_vote(rnd, vote, better)
    if vote in SIDES:
        w = SIDES.index(vote)
        chosen, chosen_model = (better, "edited") if better else (rnd.answers[w], rnd.sides[w].label)
        losers = [i for i in range(len(rnd.sides)) if i != w or better]
    elif better:
        chosen, chosen_model, losers = better, "edited", list(range(len(rnd.sides)))
    else:
        return []
    base = {"prompt": rnd.prompt, **({"system": rnd.system} if rnd.system else {})}
    rows = []
    for i in losers:
        if rnd.answers[i].strip() and rnd.answers[i].strip() != chosen.strip():
            rows.append(dict(base, chosen=chosen, rejected=rnd.answers[i], chosen_model=chosen_model,
                             rejected_model=rnd.sides[i].label, vote=vote, round=rnd.id))
    return rows


def arena_dir() -> Path:
    return paths.studio_home() / "arena"


def dataset_name(name: str) -> str:
    return slug(name or DEFAULT_DATASET, "arena dataset name")


def votes_log(dataset: str) -> Path:
    return arena_dir() / f"{dataset_name(dataset)}.votes.jsonl"


def dataset_folder(dataset: str) -> Path:
    from studio.engine.data.workspace import workspaces_root

    return workspaces_root() / dataset_name(dataset)


def record_vote(rnd: Round, vote: str, better: str = "", dataset: str = DEFAULT_DATASET) -> dict:
    """Append the vote's pairs to the dataset (one new version) and the vote to the log."""
    rows = pairs_for(rnd, vote, better)
    folder, version, total = dataset_folder(dataset), None, None
    if rows:
        ws = append_pairs(folder, rows)
        version, total = ws.head.version, ws.head.rows
    line = {"time": time.time(), "round": rnd.id, "prompt": rnd.prompt, "system": rnd.system,
            "models": [{"side": SIDES[i], "key": c.key, "label": c.label} for i, c in enumerate(rnd.sides)],
            "answers": rnd.answers, "vote": vote.strip(), "better": better.strip(), "blind": rnd.blind,
            "pairs": len(rows), "dataset": str(folder), "version": version}
    log = votes_log(dataset)
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:  # one write per line: concurrent voters never interleave
        fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return {"reveal": rnd.reveal(), "vote": vote.strip(), "pairs": len(rows), "dataset": str(folder),
            "version": version, "rows": total, "log": str(log)}


def append_pairs(folder: Path, rows: list[dict]):
    """Append rows to the workspace at ``folder`` (made, as an editable copy with versions, on the first vote)."""
    from studio.engine.data.workspace import META, Workspace

    if (folder / META).is_file():
        ws = Workspace(folder)
        ws.add_rows(rows, detail=f"arena vote: {len(rows)} pair(s)")
        return ws
    if folder.exists():
        raise ArenaError(f"{folder}: exists and is not a data studio workspace; choose another dataset name")
    arena_dir().mkdir(parents=True, exist_ok=True)
    first = arena_dir() / f".{folder.name}.first-{os.getpid()}.jsonl"
    try:
        first.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        ws = Workspace.create(first, name=folder.name, root=folder.parent)
    finally:
        first.unlink(missing_ok=True)
    if ws.root != folder:  # another voter made it meanwhile: ours became name-2; keep one dataset
        raise ArenaError(f"{folder}: made by another session at the same time; vote again")
    return ws


# -- win rates ---------------------------------------------------------------------------------------------------------


def read_votes(dataset: str = DEFAULT_DATASET) -> list[dict]:
    """Every vote in the log (a torn last line, from a crash mid-write, is skipped)."""
    try:
        text = votes_log(dataset).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def win_rates(votes: list[dict]) -> list[dict]:
    """Per pair of models that met: votes, wins of each, ties, both bad, and model 1's win rate
    ((wins + half of ties and both-bad) / votes). A "best side" vote among 3-4 models decides only the pairs with the
    winner in them. Rows sorted by votes, most first."""
    table: dict[tuple[str, str], dict] = {}
    for v in votes:
        models = v.get("models") or []
        sides = {m.get("side"): m for m in models}
        for i, a in enumerate(models):
            for b in models[i + 1:]:
                outcome = _outcome(v.get("vote"), a.get("side"), b.get("side"))
                if outcome is None:
                    continue
                first, second = sorted((a, b), key=lambda m: m.get("key", ""))
                row = table.setdefault((first["key"], second["key"]), {
                    "model_1": first.get("label"), "model_2": second.get("label"), "votes": 0, "wins_1": 0,
                    "wins_2": 0, "ties": 0, "both_bad": 0})
                row["votes"] += 1
                if outcome in ("tie", "bad"):
                    row["ties" if outcome == "tie" else "both_bad"] += 1
                else:
                    row["wins_1" if sides[outcome]["key"] == first["key"] else "wins_2"] += 1
    rows = list(table.values())
    for r in rows:
        r["win_rate_1"] = round((r["wins_1"] + 0.5 * (r["ties"] + r["both_bad"])) / r["votes"], 4)
    return sorted(rows, key=lambda r: (-r["votes"], r["model_1"], r["model_2"]))


def _outcome(vote, side_a, side_b):
    """The side letter that won this pair, 'tie', 'bad', or None when the vote says nothing about the pair."""
    if vote in ("tie", "bad"):
        return vote
    return vote if vote in (side_a, side_b) else None


# -- one click: DPO on the votes ---------------------------------------------------------------------------------------


def dpo_config(dataset: str = DEFAULT_DATASET, model: str = "", overrides: dict | None = None) -> C.RunConfig:
    """The shipped DPO preset trained on the arena's dataset (``model``: the policy to start from; default the
    preset's). The caller submits it through the job queue with its access policy."""
    folder = dataset_folder(dataset)
    if not folder.is_dir():
        raise ArenaError(f"no votes with pairs yet in {folder}: vote in the arena first")
    over = {"data.datasets": [str(folder)], "output.run_name": f"dpo-{folder.name}"}
    if model:
        over["model.name_or_path"] = model
    return C.load(paths.presets_dir() / "dpo.yaml", {**over, **(overrides or {})})
