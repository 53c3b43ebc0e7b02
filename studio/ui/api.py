"""The studio's stable HTTP API (``gr.api`` endpoints), for ``gradio_client`` scripts that drive the studio without a browser.

    from gradio_client import Client
    c = Client("http://127.0.0.1:7860/")
    run = c.predict(preset="sft_lora", overrides={"training.max_steps": 2}, api_name="/start_run")
    c.predict(run_id=run["run_id"], api_name="/run_status")

Endpoint names and argument names are a contract (README_UI_API.md documents them); the browser's own events are
private (not listed, not for clients) and may change. Every endpoint returns plain JSON; a problem the caller can fix
raises ``gr.Error`` with the reason (gradio_client raises it as ``AppError``), an argument outside the page's range too.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio import config as C
from studio.engine import arena as arena_mod
from studio.engine.jobs import export as export_job
from studio.engine.jobs import training as jobs_mod
from studio.engine import curves as metrics, rundir
from studio.ui import limits
from studio.ui.context import AppContext


def run_report(run_dir, log_lines: int = 20) -> dict:
    """Everything a client wants to know about one run, as plain JSON."""
    st = rundir.effective_status(run_dir)
    last = metrics.latest(run_dir)
    return {"run_id": run_dir.name, "run_dir": str(run_dir), "state": st.get("state", "unknown"),
            "step": int(st.get("step") or 0), "max_steps": int(st.get("max_steps") or 0), "exit_code": st.get("exit_code"),
            "error": st.get("error"), "final_loss": st.get("final_loss"), "loss": last.get("loss"),
            "elapsed": st.get("elapsed"), "eta": st.get("eta"), "started_at": st.get("started_at"),
            "ended_at": st.get("ended_at"), "output": st.get("output", ""), "log_tail": jobs_mod.log_tail(run_dir, log_lines)}


def bounded(**values) -> None:
    """Refuse arguments outside the ranges the page's sliders allow (``limits.RANGES``), naming each one."""
    try:
        limits.check(**values)
    except limits.OutOfRange as exc:
        raise gr.Error(str(exc)) from None


class StudioApi:
    """The endpoint functions, bound to the process's AppContext. Method name = endpoint name."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def list_presets(self) -> list[dict]:
        """The presets (presets/*.yaml): name, file and the description from the file's header comment."""
        # no "path" key: gradio_client takes a dict with one for a file and tries to download it
        return [{"name": n, "file": str(p), "description": self.ctx.preset_description(p)} for n, p in self.ctx.presets().items()]

    def start_run(self, preset: str = "", overrides: dict[str, Any] | None = None) -> dict:
        """Start a run (or queue it behind the active one) from a preset and "section.key": value overrides."""
        path = self.ctx.presets().get(preset) if preset else None
        if preset and path is None:
            raise gr.Error(f"unknown preset '{preset}' (available: {', '.join(self.ctx.presets()) or 'none'})")
        try:
            job = self.ctx.jobs.submit(C.load(path, overrides or {}), access=self.ctx.access)
        except (C.ConfigError, OSError) as exc:  # OSError: AccessError (a path or code option the web may not use)
            raise gr.Error(str(exc)) from None
        queued = [j.run_id for j in self.ctx.jobs.queued()]
        return dict(run_report(job.run_dir), command=" ".join(job.argv),
                    queue_position=queued.index(job.run_id) + 1 if job.run_id in queued else 0)

    def stop_run(self, run_id: str = "") -> dict:
        """Stop the active run (or cancel a queued one); empty run_id = the active run."""
        active = self.ctx.jobs.active()
        target = run_id or (active.run_id if active else "")
        if not target:
            raise gr.Error("no run is active")
        if not self.ctx.jobs.stop(target):
            raise gr.Error(f"run '{target}' is neither active nor queued")
        return run_report(self._run_dir(target))

    def resume_run(self, run_id: str) -> dict:
        """Queue an aborted or failed run again: it continues from its last checkpoint, with its own processes."""
        try:
            job = self.ctx.jobs.resume(run_id, access=self.ctx.access)
        except (C.ConfigError, OSError) as exc:
            raise gr.Error(str(exc)) from None
        queued = [j.run_id for j in self.ctx.jobs.queued()]
        return dict(run_report(job.run_dir), command=" ".join(job.argv),
                    queue_position=queued.index(job.run_id) + 1 if job.run_id in queued else 0)

    def cancel_run(self, run_id: str) -> dict:
        """Remove a queued run from the queue before it starts."""
        if not self.ctx.jobs.cancel(run_id):
            raise gr.Error(f"run '{run_id}' is not queued")
        return run_report(self._run_dir(run_id))

    def run_status(self, run_id: str = "") -> dict:
        """A run's state, step, loss, exit code and log tail; empty run_id = the active or most recent run."""
        if run_id:
            return run_report(self._run_dir(run_id))
        path = self.ctx.jobs.last_run() or next((r.path for r in rundir.list_runs(self.ctx.runs_root)), None)
        if path is None:
            raise gr.Error("no runs yet")
        return run_report(path)

    def list_runs(self) -> list[dict]:
        """Every run under the runs folder, newest first, with the queue position of queued ones."""
        queued = [j.run_id for j in self.ctx.jobs.queued()]
        return [{"run_id": r.run_id, "run_dir": str(r.path), "state": r.state, "stage": r.stage,
                 "finetuning_type": r.finetuning_type, "step": r.step, "max_steps": r.max_steps, "final_loss": r.final_loss,
                 "exit_code": r.exit_code, "started_at": r.started_at, "ended_at": r.ended_at,
                 "queue_position": queued.index(r.run_id) + 1 if r.run_id in queued else 0}
                for r in rundir.list_runs(self.ctx.runs_root)]

    def chat_compare(self, prompt: str, adapter: str = "", model: str = "default", system: str = "",
                     temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 128) -> dict:
        """One prompt answered by the base model and by the tuned one (adapter, run folder or merged folder)."""
        bounded(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        base = tuned = None
        try:
            for base, tuned in self.ctx.compare(model, adapter, msgs, msgs, temperature, top_p, max_new_tokens):
                pass
        except Exception as exc:  # model/adapter loading problems are the caller's to fix
            raise gr.Error(str(exc)) from None
        return {"base": base, "tuned": tuned, "model": model, "adapter": adapter}

    def merge(self, source: str, out_dir: str = "", dtype: str = "float32", overwrite: bool = False) -> dict:
        """Merge an adapter (run folder or adapter folder) into its base model and save it (verified by logits); runs
        ``studio export`` as a child, like ``/export`` and the Export tab (this process never loads a model for it)."""
        try:
            req = export_job.merge_request(source, out_dir, dtype, overwrite, access=self.ctx.access)
        except (export_job.RequestError, OSError) as exc:
            raise gr.Error(str(exc)) from None
        return self._run_export(req)

    def export(self, sources: list[str], out_dir: str = "", weights: list[float] | None = None, combine: str = "cat",
               density: float = 0.5, output: str = "model", dtype: str = "float32", gguf: list[str] | None = None,
               overwrite: bool = False) -> dict:
        """Everything ``studio export`` does, run as that command in a child: merge one source, or combine several with
        weights (``combine``: cat, linear, ties, dare_linear, ...; ``output``: model or adapter), optional GGUF types."""
        try:
            req = export_job.build_request(list(sources or []), weights, combine, density, output, out_dir, dtype, gguf,
                                           overwrite, access=self.ctx.access)
        except (export_job.RequestError, OSError) as exc:
            raise gr.Error(str(exc)) from None
        return self._run_export(req)

    def _run_export(self, req) -> dict:
        state = export_job.ExportJob.start(req, access=self.ctx.access).wait()
        if state["state"] != "finished":
            raise gr.Error(state["error"] or "the export failed")
        return dict(state["result"], command=state["command"])

    def evaluate(self, model: str = "default", adapter: str = "", data: str = "", split: str = "",
                 metrics: str = "em,f1,rougeL,bleu", custom_metrics: list[str] | None = None, compare: bool = False,
                 max_new_tokens: int = 128, temperature: float = 0.0, batch_size: int = 8, system: str = "",
                 out_dir: str = "", changed_rows: int = 5) -> dict:
        """Everything ``studio eval`` does (same arguments), run as that command in a child as the Evaluate tab does;
        waits for it and returns the metrics table, the output folder and the rows that changed most."""
        bounded(max_new_tokens=max_new_tokens, temperature=temperature, batch_size=batch_size, changed_rows=changed_rows)
        from studio.engine.jobs import evaluation as eval_jobs
        from studio.engine.evaluate import predict as E
        from studio.engine.data.load import DataError
        from studio.engine.evaluate.scores import MetricError

        access = self.ctx.access
        adapter, data = (adapter or "").strip(), (data or "").strip()
        try:  # the child would say the same, but only after loading torch: name bad input at once
            adapter = str(access.path(adapter, "adapter")) if adapter else ""
            data = access.spec(data, "data") if data else ""
            split = split or ("val" if not data and E.resolve_run_dir(adapter) else "all")
            req = E.EvalRequest(model=model or "default", adapter=adapter, data=data, split=split, metrics=metrics,
                                compare=bool(compare))
            if not E.parse_metrics(metrics) and not custom_metrics:
                raise E.EvalError("no metric chosen: give metrics (em, f1, rougeL, bleu, ppl) or custom_metrics")
            E.sides_for(req)
            out = access.path(out_dir or eval_jobs.default_out_dir(adapter, data, split), "output folder")
            argv = eval_jobs.eval_argv(out, model=req.model,
                                       adapter=adapter, data=data, split=split, metrics=metrics,
                                       custom_metrics=list(custom_metrics or []), compare=bool(compare),
                                       max_new_tokens=max_new_tokens, temperature=temperature, batch_size=batch_size,
                                       system=system, access=access)
            if split != "val":
                E.load_rows(req)
            eval_jobs.start(argv, out, access=access)
        except (E.EvalError, DataError, MetricError, RuntimeError, OSError) as exc:
            raise gr.Error(str(exc)) from None
        info = eval_jobs.wait(out, access=access)
        res = eval_jobs.results(out, access=access)
        if info.get("state") != "finished" or res is None:
            raise gr.Error(f"the evaluation failed: {eval_jobs.error_of(out, info)} (log: {out / E.LOG})")
        return {"table": res["table"], "out_dir": str(out), "predictions": str(out / E.PREDICTIONS), "rows": res["rows"],
                "models": res["models"], "metrics": res["metrics"], "seconds": res["seconds"],
                "changed_most": (res.get("changed_most") or [])[:max(0, int(changed_rows))], "probe": res.get("probe"),
                "command": eval_jobs.shown_command(argv)}

    def arena_round(self, prompt: str, models: list[str], model: str = "default", system: str = "", blind: bool = True,
                    temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 128) -> dict:
        """2 to 4 models answer ``prompt`` (``models``: "base" and/or run, adapter, merged or GGUF paths); blind: the
        sides are shuffled and ``models`` is null until the vote. Returns {round_id, answers: {A: text, ...}, models}."""
        bounded(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
        try:
            sides = [arena_mod.contender(m, model, access=self.ctx.access) for m in (models or [])]
            rnd = self.ctx.arena.play(sides, prompt, system, bool(blind),
                                      dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens))
        except Exception as exc:  # a bad vote request, a path outside, a model that does not load: the caller's to fix
            raise gr.Error(str(exc)) from None
        return rnd.public()

    def arena_vote(self, round_id: str, vote: str, better: str = "", dataset: str = arena_mod.DEFAULT_DATASET) -> dict:
        """The vote on a round: ``vote`` A/B/C/D (the best side), ``tie`` or ``bad``; ``better``: an answer you wrote
        (becomes 'chosen'). Pairs go to the preference dataset ``$STUDIO_HOME/datasets/<dataset>``. Returns {reveal,
        vote, pairs, dataset, version, rows, log, table}."""
        try:
            res = self.ctx.arena.vote(round_id, vote, better, dataset)
            return dict(res, table=arena_mod.win_rates(arena_mod.read_votes(dataset)))
        except (arena_mod.ArenaError, OSError, ValueError) as exc:
            raise gr.Error(str(exc)) from None

    def arena_stats(self, dataset: str = arena_mod.DEFAULT_DATASET) -> dict:
        """Win rates per pair of models from the votes on ``dataset``: {dataset, votes, table: [{model_1, model_2, votes,
        wins_1, wins_2, ties, both_bad, win_rate_1}]}."""
        try:
            votes = arena_mod.read_votes(dataset)
            return {"dataset": str(arena_mod.dataset_folder(dataset)), "votes": len(votes),
                    "table": arena_mod.win_rates(votes)}
        except OSError as exc:
            raise gr.Error(str(exc)) from None

    def arena_train_dpo(self, dataset: str = arena_mod.DEFAULT_DATASET, model: str = "",
                        overrides: dict[str, Any] | None = None) -> dict:
        """"Train DPO on my votes": the DPO preset on the arena's dataset (``model``: the policy to start from, default
        the preset's; ``overrides`` as for /start_run), queued like any run. Returns the run report and command."""
        try:
            job = self.ctx.jobs.submit(arena_mod.dpo_config(dataset, model, overrides), access=self.ctx.access)
        except (arena_mod.ArenaError, C.ConfigError, OSError) as exc:
            raise gr.Error(str(exc)) from None
        return dict(run_report(job.run_dir), command=" ".join(job.argv))

    def _run_dir(self, run_id: str):
        path = self.ctx.jobs.find(run_id)
        if path is None:
            raise gr.Error(f"no run '{run_id}' under {self.ctx.runs_root}")
        return path


ENDPOINTS = ("list_presets", "start_run", "stop_run", "resume_run", "cancel_run", "run_status", "list_runs", "chat_compare",
             "merge", "export", "evaluate", "arena_round", "arena_vote", "arena_stats", "arena_train_dpo")
SLOW = ("chat_compare", "merge", "export", "evaluate", "arena_round")  # one at a time: each loads a model


def register(ctx: AppContext) -> StudioApi:
    """Add the API endpoints to the Blocks being built (call inside ``with gr.Blocks()``)."""
    endpoints = StudioApi(ctx)
    for name in ENDPOINTS:
        gr.api(getattr(endpoints, name), api_name=name, concurrency_limit=1 if name in SLOW else None, concurrency_id=name)
    return endpoints
