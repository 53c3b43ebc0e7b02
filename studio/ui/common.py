"""Small helpers the tabs share: formatting times and sizes, run pickers, status lines. Plain functions, no state."""

from __future__ import annotations

import html
import time
from pathlib import Path

from studio.engine.jobs import training as jobs_mod
from studio.engine import rundir
from studio.ui.i18n import state_name, t


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def fmt_size(n: int | float | None) -> str:
    if not n:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def fmt_num(v) -> str:
    return "–" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def run_ids(ctx) -> list[str]:
    return [r.run_id for r in rundir.list_runs(ctx.runs_root)]


def tuned_outputs(ctx) -> list[tuple[str, str]]:
    """(label, path) for every run that left an adapter or merged weights, then every export under $STUDIO_HOME/exports
    (its folder and each GGUF file in it): the Chat tab's tuned picker."""
    from studio.engine.jobs.export import list_exports

    out = []
    for r in rundir.list_runs(ctx.runs_root):
        for sub in (rundir.ADAPTER, rundir.MODEL, "merged"):
            if (r.path / sub).is_dir():
                out.append((f"{r.run_id}/{sub}", str(r.path / sub)))
    for e in list_exports():
        out.append((f"exports/{e['name']} ({e['output']})", e["path"]))
        out += [(f"exports/{e['name']}/gguf/{Path(g).name}", g) for g in e["gguf"]]
    return out


def progress_html(run_dir: Path | None, lang: str, active: bool) -> str:
    """A progress bar with step, elapsed, ETA and loss for one run (or the idle hint)."""
    if run_dir is None:
        return f"<div class='ts-progress'>{_md_inline(t('train.idle', lang))}</div>"
    st = rundir.effective_status(run_dir)
    state = st.get("state", "unknown")
    step, total = int(st.get("step") or 0), int(st.get("max_steps") or 0)
    pct = 100 if state == "finished" else (100 * step / total if total else 0)
    parts = [t("train.step", lang, step=step, max=total or "?")]
    if st.get("elapsed") is not None:
        parts.append(t("train.elapsed", lang, t=fmt_duration(st.get("elapsed"))))
    if state == "running" and st.get("eta") is not None:
        parts.append(t("train.eta", lang, t=fmt_duration(st.get("eta"))))
    loss = st.get("final_loss") or st.get("loss")
    if loss is not None:
        parts.append(t("train.loss", lang, v=fmt_num(loss)))
    if isinstance(st.get("world_size"), int) and st["world_size"] > 1:
        parts.append(t("train.group", lang, n=st["world_size"], m=st.get("num_machines") or 1, backend=st.get("backend", "ddp")))
    if st.get("worker_of"):
        parts.append(t("train.worker", lang, main=st["worker_of"]))
    label = state_name(state, lang)
    if state == "queued" and active:
        label = t("train.starting", lang)
    if state == "failed" and st.get("exit_code") is not None:
        label += " · " + t("train.failed_code", lang, code=st.get("exit_code"))
    return progress_bar(run_dir.name, label, pct, state, " · ".join(parts))


BAR_STATES = ("queued", "running", "finished", "failed", "aborted")  # the fill colours app.CSS defines


def progress_bar(title: str, label: str, percent: float, state: str, text: str, detail: str = "") -> str:
    """The one progress bar of the studio (training runs, evaluations, exports): a title, a state label, a bar filled to
    ``percent`` and coloured by ``state``, a line of text, and optional preformatted ``detail`` (an error, a log tail)."""
    css = {"stopped": "aborted", "cancelled": "failed"}.get(state, state)
    css = css if css in BAR_STATES else "running"
    body = (f"<div class='ts-progress' data-state='{html.escape(state)}'>"
            f"<div class='ts-progress-head'><b>{html.escape(title)}</b> · <span class='ts-state'>{html.escape(label)}</span>"
            f"</div><div class='ts-bar'><div class='ts-fill ts-{css}' style='width:{max(0.0, min(100.0, percent)):.1f}%'>"
            f"</div></div><div class='ts-progress-text'>{html.escape(text)}</div></div>")
    return body + (f"<pre class='ts-rendered'>{html.escape(detail)}</pre>" if detail else "")


def failure_note(run_dir: Path, lang: str, lines: int = 20) -> str:
    """Markdown for a failed run: exit code, error, last log lines."""
    st = rundir.effective_status(run_dir)
    code = st.get("exit_code")
    head = t("mon.failed", lang, run=run_dir.name, code=t("train.failed_code", lang, code=code if code is not None else "?"))
    error = (st.get("error") or "").strip()
    tail = jobs_mod.log_tail(run_dir, lines).strip()
    body = f"{head}\n\n```text\n{tail or error}\n```"
    if error and tail and error.splitlines()[-1] not in tail:
        body += "\n\n" + t("mon.error", lang, error=error.splitlines()[-1])
    return body


def _md_inline(text: str) -> str:
    """The few Markdown bits our messages use (**bold**) as HTML, escaped."""
    out, bold = [], False
    for i, chunk in enumerate(html.escape(text).split("**")):
        out.append(("<b>" if bold else "</b>") if i else "")
        out.append(chunk)
        bold = not bold
    return "".join(out) + ("</b>" if not bold else "")
