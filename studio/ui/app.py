"""The studio web UI: assembles the tabs into one ``gr.Blocks`` and launches it.

    python launch.py [--host 127.0.0.1] [--port 7860] [--share] [--auth USER:PASS] [--lang en|zh]
    studio webui [same flags]

Safe by default: binds the loopback address; answers only requests addressed to it (``studio.ui.guard``: Host/Origin
allow-list, login throttle, upload cap); ``--share`` without ``--auth`` gets a generated password (printed and written
to ``$STUDIO_HOME/share-login.txt``); a non-loopback ``--host`` without a login refuses to start (exit 2) unless
``--insecure-no-login``; a password under 8 characters is refused. Importing this module does not import torch or
transformers: the tabs load them when first needed, so the page is up in seconds.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import sys
from dataclasses import dataclass

import gradio as gr

from studio import paths
from studio.ui import api, guard, limits, share
from studio.ui.common import tuned_outputs
from studio.ui.context import AppContext
from studio.ui.flags import AUTH_ENV, parse_args
from studio.ui.panels import identity_card
from studio.ui.tabs import chat as chat_tab
from studio.ui.tabs import data as data_tab
from studio.ui.tabs import evaluate as eval_tab
from studio.ui.tabs import export as export_tab
from studio.ui.tabs import monitor as monitor_tab
from studio.ui.tabs import train as train_tab
from studio.ui.i18n import LANG_NAMES, LANGS, Texts, t

SHARE_USER = "studio"

CSS = """
.ts-progress { padding: 8px 0; }
.ts-progress-head { margin-bottom: 6px; }
.ts-bar { height: 14px; border-radius: 7px; background: var(--neutral-200); overflow: hidden; }
.ts-fill { height: 100%; background: var(--color-accent); transition: width .4s; }
.ts-fill.ts-failed { background: #d9534f; } .ts-fill.ts-aborted { background: #f0ad4e; } .ts-fill.ts-finished { background: #3c9a5f; }
.ts-progress-text { margin-top: 4px; font-variant-numeric: tabular-nums; color: var(--body-text-color-subdued); }
.ts-rendered { white-space: pre-wrap; word-break: break-word; font-size: 13px; line-height: 1.5; padding: 8px; }
.ts-trained { background: rgba(60, 154, 95, .25); border-bottom: 2px solid #3c9a5f; }
.ts-masked { color: var(--body-text-color-subdued); }
.ts-pad { color: var(--body-text-color-subdued); opacity: .45; }
.ts-boundary { color: #d9534f; font-weight: bold; }
#ts-header h1 { margin-bottom: 0; }
"""


@dataclass
class AppRefs:
    demo: gr.Blocks
    lang: gr.State
    lang_radio: gr.Radio
    header: Texts
    tabs: dict[str, gr.Tab]
    tabs_block: gr.Tabs
    train: train_tab.TrainRefs
    monitor: monitor_tab.MonitorRefs
    data: data_tab.DataRefs
    export: export_tab.ExportRefs
    chat: chat_tab.ChatRefs
    evaluate: eval_tab.EvalRefs | None = None


def build(ctx: AppContext) -> AppRefs:
    """Build the whole page (no launching): every tab, every handler, the API endpoints."""
    head = Texts(ctx.lang)
    with gr.Blocks(title=t("app.title", ctx.lang), analytics_enabled=False, delete_cache=limits.UPLOAD_CACHE) as demo:
        lang = gr.State(ctx.lang)
        with gr.Row(elem_id="ts-header"):
            with gr.Column(scale=4):
                head.make(gr.Markdown, value=("# Tuning Studio", "# 微调工作室 Tuning Studio"))
                head.make(gr.Markdown, value="app.subtitle")
            radio = head.make(gr.Radio, label="app.lang", choices=[(LANG_NAMES[x], x) for x in LANGS], value=ctx.lang,
                              scale=1, elem_id="ts-lang")
        tabs: dict[str, gr.Tab] = {}
        with gr.Tabs() as tabs_block:
            with head.make(gr.Tab, label="tab.train", id="train", elem_id="tab-train") as tabs["train"]:
                train = train_tab.build(ctx, lang)
            with head.make(gr.Tab, label="tab.monitor", id="monitor", elem_id="tab-monitor") as tabs["monitor"]:
                monitor = monitor_tab.build(ctx, lang)
            with head.make(gr.Tab, label="tab.eval", id="eval", elem_id="tab-eval") as tabs["eval"]:
                evaluate = eval_tab.build(ctx, lang)
            with head.make(gr.Tab, label="tab.data", id="data", elem_id="tab-data") as tabs["data"]:
                data = data_tab.build(ctx, lang)
            with head.make(gr.Tab, label="tab.export", id="export", elem_id="tab-export") as tabs["export"]:
                export = export_tab.build(ctx, lang)
            with head.make(gr.Tab, label="tab.chat", id="chat", elem_id="tab-chat") as tabs["chat"]:
                chat = chat_tab.build(ctx, lang)
        api.register(ctx)
        refs = AppRefs(demo, lang, radio, head, tabs, tabs_block, train, monitor, data, export, chat, evaluate)
        _wire(ctx, refs)
    return refs


def build_app(ctx: AppContext) -> gr.Blocks:
    return build(ctx).demo


def _wire(ctx: AppContext, refs: AppRefs) -> None:
    ui = dict(api_visibility="private")
    updates = _relabel_targets(refs, ctx)
    refs.lang_radio.change(lambda lg: _on_lang(ctx, refs, lg), refs.lang_radio, [refs.lang, *updates], **ui)
    # a page (re)load re-attaches to whatever runs: the monitor picks the active run, the train tab shows its progress
    refs.demo.load(lambda lg: monitor_tab.on_load(ctx, lg), refs.lang, monitor_tab.outputs(refs.monitor), **ui)
    export_tab.wire_load(refs.demo, refs.export, refs.lang)  # and the Export tab the newest export
    # the Data tab's "Use in training" appends the dataset to the Train form
    datasets = refs.train.fields["data.datasets"]
    refs.data.use.click(_on_use_dataset, [refs.data.spec, datasets, refs.lang], [datasets, refs.data.info], **ui)
    # the self-cognition card's "Chat with it" opens the Chat tab on the run's adapter (base model from the run's config)
    ident = refs.train.identity
    refs.train.identity.open_chat.click(lambda run: _open_in_chat(ctx, identity_card.chat_target(run)), ident.run,
                                        [refs.tabs_block, refs.chat.run, refs.chat.adapter, refs.chat.model], **ui)
    # the Export tab's "Open in Chat" selects what was just exported as the Chat tab's tuned side
    chat = refs.chat
    refs.export.open_chat.click(
        lambda tgt, lg: [gr.Tabs(selected="chat"), *chat_tab.open_target(ctx, (tgt or {}).get("path"), lg)],
        [refs.export.target, refs.lang], [refs.tabs_block, chat.run, chat.adapter, chat.model, chat.note], **ui)


def _relabel_targets(refs: AppRefs, ctx: AppContext | None = None) -> list:
    seen: dict = {}
    for tx in _all_texts(refs):
        for component, _ in tx.items:
            seen[component._id] = component
    seen[refs.train.preset._id] = refs.train.preset
    if ctx is not None:  # what each tab's relabel() updates must be an output too (else Gradio rejects the whole switch)
        for module, tab_refs in ((train_tab, refs.train), (monitor_tab, refs.monitor), (data_tab, refs.data),
                                 (export_tab, refs.export), (chat_tab, refs.chat), (eval_tab, refs.evaluate)):
            for component in module.relabel(ctx, tab_refs, ctx.lang):
                seen[component._id] = component
    return list(seen.values())


def _all_texts(refs: AppRefs) -> list[Texts]:
    return [refs.header, refs.train.texts, refs.train.identity.texts, refs.monitor.texts, refs.data.texts, refs.export.texts, refs.chat.texts,
            refs.evaluate.texts]


def _on_lang(ctx: AppContext, refs: AppRefs, lang: str) -> dict:
    merged: dict = {}
    for tx in _all_texts(refs):
        for component, kw in tx.update_map(lang).items():
            merged.setdefault(component, {}).update(kw)
    for module, tab_refs in ((train_tab, refs.train), (monitor_tab, refs.monitor), (data_tab, refs.data),
                             (export_tab, refs.export), (chat_tab, refs.chat), (eval_tab, refs.evaluate)):
        for component, kw in module.relabel(ctx, tab_refs, lang).items():
            merged.setdefault(component, {}).update(kw)
    out = {component: gr.update(**kw) for component, kw in merged.items()}
    out[refs.lang] = lang
    return out


def _open_in_chat(ctx: AppContext, folder: str | None) -> list:
    """Select the Chat tab with ``folder`` (an adapter or model folder) as the tuned side."""
    if not folder:
        return [gr.skip()] * 4
    adapter, model = chat_tab.on_run(ctx, folder)
    return [gr.Tabs(selected="chat"), gr.update(choices=tuned_outputs(ctx), value=folder), adapter, model]


def _on_use_dataset(spec: str, current, lang: str) -> list:
    """The Data tab's dataset added to the Train form's dataset picker (a list; older callers pass one per line)."""
    spec = (spec or "").strip()
    if not spec:
        return [gr.skip(), t("data.empty", lang)]
    chosen = list(current) if isinstance(current, (list, tuple)) else [x for x in (current or "").splitlines() if x.strip()]
    if spec not in chosen:
        chosen.append(spec)
    return [chosen, t("data.added", lang, spec=spec)]


# -- launching -------------------------------------------------------------------------------------------------------------


class LaunchRefused(Exception):
    """A launch that would be unsafe or cannot work; ``serve`` prints the message and exits with status 2."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_auth(args: argparse.Namespace, say=print) -> tuple[str, str] | None:
    """The login to require: --auth/env, a generated one for --share, or None. Refuses (``LaunchRefused``) a short
    password, and a non-loopback --host without a login unless --insecure-no-login. Says what the user must know."""
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise LaunchRefused(f"--auth (or {AUTH_ENV}) must be USER:PASS, both non-empty")
        if len(password) < limits.MIN_PASSWORD:
            raise LaunchRefused(f"--auth (or {AUTH_ENV}): the password has {len(password)} characters; use at least "
                                f"{limits.MIN_PASSWORD}")
        return user, password
    if args.share:
        password = secrets.token_urlsafe(12)
        where = share.write_login(SHARE_USER, password)
        say(f"[studio] --share without --auth: the public link needs a login. user: {SHARE_USER}  password: {password}"
            f"  (also written to {where}, readable by you only)")
        return SHARE_USER, password
    if not is_loopback(args.host):
        if not getattr(args, "insecure_no_login", False):
            raise LaunchRefused(
                f"--host {args.host} is reachable from other machines, and no login is set: anyone who can reach the port "
                f"could start runs and read and write files through the studio. Add --auth USER:PASS (or {AUTH_ENV}), "
                f"or pass --insecure-no-login if this network is yours alone.")
        say(f"[studio] WARNING: --insecure-no-login: serving {args.host} without a login; anyone who can reach this port "
            "can start runs and read and write under the allowed folders.")
    return None


def make_guard(args: argparse.Namespace | None = None) -> guard.WebGuard:
    """The front door for these flags: the Host/Origin names to accept, the login throttle, the upload cap."""
    host = getattr(args, "host", "127.0.0.1")
    return guard.WebGuard(guard.HostPolicy(host, getattr(args, "allow_host", []) or []))


def launch_options(web_guard: guard.WebGuard | None = None) -> dict:
    """The look and server options every launch uses (tests launch with the same); the guard defaults to loopback."""
    # system fonts: the default theme would fetch Google fonts, which an offline machine cannot
    theme = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    app_kwargs = {"lifespan": guard.installer(web_guard or make_guard())}
    return dict(theme=theme, css=CSS, ssr_mode=False, max_file_size=limits.MAX_FILE_SIZE, quiet=True, app_kwargs=app_kwargs)


def main(argv: list[str] | None = None) -> int:
    """``python launch.py [flags]`` / ``studio webui [flags]``."""
    return serve(parse_args(argv))


def serve(args: argparse.Namespace) -> int:
    """Launch with parsed flags (``studio.ui.flags``) and block until Ctrl-C."""
    os.umask(0o077)  # every file the studio and its children write (uploads, datasets, runs, logs) is the owner's alone
    paths.prepare_home()
    try:
        auth = resolve_auth(args)
    except LaunchRefused as exc:
        print(f"[studio] refusing to start: {exc}", file=sys.stderr)
        return 2
    ctx = AppContext.create(lang=args.lang, runs_root=args.runs_dir or None, allow_paths=tuple(args.allow_path),
                            allow_code=args.allow_code)
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=4, max_size=limits.QUEUE_MAX)
    web_guard = make_guard(args)
    public = args.share and share.reachable()
    if args.share and not public:
        print(f"[studio] --share: the share server did not answer within {share.PROBE_S:g} s (no internet?)", flush=True)
    try:
        _, local_url, share_url = demo.launch(server_name=args.host, server_port=args.port, share=public, auth=auth,
                                              prevent_thread_lock=True, **launch_options(web_guard))
    except OSError as exc:
        print(f"[studio] cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        ctx.close()
        return 2
    print(f"[studio] Tuning Studio at {local_url}  (runs: {ctx.runs_root})", flush=True)
    if args.share:
        if share_url:
            web_guard.policy.add_proxy(share_url)
            print(f"[studio] public link: {share_url}", flush=True)
        else:
            print("[studio] the public share link could not be created (no internet access, or the tunnel was refused); "
                  f"still serving locally at {local_url}", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        ctx.close()
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
