"""Every label and message of the studio UI, in English and Chinese: the one place that holds UI strings.

``t(key, lang, **fmt)`` looks a string up (a ``(en, zh)`` pair is accepted as is, e.g. RunConfig's help texts).
``Texts`` is created once per tab build: it makes components with translated texts and remembers which texts each
component has, so the language switch can relabel a whole page (``Texts.update_map(lang)``) without any global registry.

Run the consistency check: ``python -m studio.ui.i18n`` (every key has both languages).
"""

from __future__ import annotations

from typing import Any, Union

from studio.ui.i18n_arena import STRINGS as ARENA_STRINGS
from studio.ui.i18n_data import STRINGS as DATA_STRINGS
from studio.ui.i18n_insight import STRINGS as INSIGHT_STRINGS

LANGS = ("en", "zh")
LANG_NAMES = {"en": "English", "zh": "中文"}

Msg = Union[str, tuple[str, str]]  # an i18n key, or a literal (en, zh) pair

STRINGS: dict[str, tuple[str, str]] = {
    # -- app shell ---------------------------------------------------------------------------------------------------
    "app.title": ("Tuning Studio", "微调工作室"),
    "app.subtitle": ("Fine-tune small language models: train, watch, compare, chat, export.",
                     "微调小型语言模型：训练、监控、对比、对话、导出。"),
    "app.lang": ("Language / 语言", "Language / 语言"),
    "tab.train": ("Train", "训练"),
    "tab.monitor": ("Monitor", "监控"),
    "tab.data": ("Data", "数据"),
    "tab.export": ("Export", "导出"),
    "tab.chat": ("Chat", "对话"),
    "tab.eval": ("Evaluate", "评估"),
    # -- train tab ---------------------------------------------------------------------------------------------------
    "train.preset": ("Preset", "预设"),
    "train.preset_info": ("Fills the form from presets/*.yaml; every field can still be changed.",
                          "从 presets/*.yaml 填充表单，之后仍可修改任意字段。"),
    "train.preset_none": ("(defaults)", "（默认值）"),
    "train.advanced": ("Advanced", "高级"),
    "train.start": ("Start", "开始训练"),
    "train.stop": ("Stop", "停止"),
    "train.show_cmd": ("Show command", "显示命令"),
    "train.command": ("Command (the same run from a shell)", "命令（在终端中运行同样的训练）"),
    "train.log": ("Log (last lines)", "日志（最后几行）"),
    "train.queue": ("Queue", "队列"),
    "train.queued_run": ("Queued run", "排队中的运行"),
    "train.cancel": ("Cancel queued run", "取消排队的运行"),
    "train.idle": ("No run yet: fill the form (or pick a preset) and press **Start**.",
                   "还没有运行：填写表单（或选择预设）后点击 **开始训练**。"),
    "train.invalid": ("Fix these values before starting:", "开始前请修正以下取值："),
    "train.submitted": ("Run **{run}** started. Watch it here or in the Monitor tab.",
                        "运行 **{run}** 已启动，可在此处或“监控”页查看。"),
    "train.queued_msg": ("Run **{run}** is queued (position {pos}): it starts when the active run ends.",
                         "运行 **{run}** 已排队（第 {pos} 位），当前运行结束后自动开始。"),
    "train.stop_sent": ("Stop requested for **{run}**: it stops after the current step and saves a checkpoint.",
                        "已请求停止 **{run}**：当前步结束后停止并保存检查点。"),
    "train.no_active": ("No run is active.", "当前没有正在运行的训练。"),
    "train.cancelled": ("Cancelled **{run}**.", "已取消 **{run}**。"),
    "train.not_queued": ("**{run}** is not in the queue any more.", "**{run}** 已不在队列中。"),
    "train.pick_queued": ("Pick a queued run first.", "请先选择一个排队中的运行。"),
    "train.cmd_note": ("The studio starts exactly: `{argv}`", "工作室实际启动的命令：`{argv}`"),
    "train.step": ("step {step} / {max}", "第 {step} / {max} 步"),
    "train.elapsed": ("elapsed {t}", "已用 {t}"),
    "train.eta": ("ETA {t}", "剩余 {t}"),
    "train.loss": ("loss {v}", "损失 {v}"),
    "train.starting": ("starting (loading the model and data)…", "启动中（加载模型与数据）…"),
    "train.failed_code": ("exit code {code}", "退出码 {code}"),
    "train.resume": ("Resume", "继续训练"),
    "train.resumed": ("Run **{run}** queued to continue from its last checkpoint.", "运行 **{run}** 已排队，将从最后的检查点继续。"),
    "train.no_resume": ("No run to resume yet.", "还没有可继续的运行。"),
    "train.group": ("{n} processes on {m} machine(s), {backend}", "{m} 台机器共 {n} 个进程，{backend}"),
    "train.worker": ("worker machine: metrics and adapter on the main machine {main}", "从机：指标与适配器在主机 {main} 上"),
    # -- run states --------------------------------------------------------------------------------------------------
    "state.queued": ("queued", "排队中"),
    "state.running": ("running", "运行中"),
    "state.finished": ("finished", "已完成"),
    "state.failed": ("failed", "失败"),
    "state.aborted": ("stopped", "已停止"),
    "state.unknown": ("unknown", "未知"),
    # -- config sections ---------------------------------------------------------------------------------------------
    "section.model": ("Model", "模型"),
    "section.data": ("Data", "数据"),
    "section.method": ("Method", "方法"),
    "section.lora": ("LoRA", "LoRA"),
    "section.freeze": ("Freeze (partial) tuning", "冻结（部分参数）微调"),
    "section.quantization": ("Quantization (QLoRA)", "量化（QLoRA）"),
    "section.training": ("Training", "训练参数"),
    "section.output": ("Output", "输出"),
    "section.identity": ("Self-cognition (identity)", "自我认知（身份）"),
    "section.preference": ("Preference (reward model, DPO, KTO)", "偏好对齐（奖励模型、DPO、KTO）"),
    "section.rl": ("RLHF (PPO, GRPO, RLOO)", "强化学习（PPO、GRPO、RLOO）"),
    "section.distributed": ("Hardware (devices, processes, machines)", "硬件（设备、进程、机器）"),
    # -- monitor tab -------------------------------------------------------------------------------------------------
    "mon.runs": ("Runs", "运行记录"),
    "mon.pick": ("Runs to show (pick several to overlay)", "要显示的运行（可多选叠加对比）"),
    "mon.refresh": ("Refresh", "刷新"),
    "mon.smoothing": ("Loss smoothing (EMA)", "损失平滑（EMA）"),
    "mon.live": ("Live update", "实时刷新"),
    "mon.chart.loss": ("Loss (train raw and smoothed, eval)", "损失（训练原始与平滑、验证）"),
    "mon.chart.eval_loss": ("Eval loss", "验证损失"),
    "mon.chart.learning_rate": ("Learning rate", "学习率"),
    "mon.chart.grad_norm": ("Gradient norm", "梯度范数"),
    "mon.chart.tokens_per_s": ("Tokens / s", "每秒 token 数"),
    "mon.chart.rewards": ("Rewards (chosen / rejected)", "奖励（选中 / 拒绝）"),
    "mon.chart.margins": ("Reward margins", "奖励差值"),
    "mon.chart.accuracies": ("Reward accuracies", "奖励准确率"),
    "mon.chart.kl": ("KL divergence", "KL 散度"),
    "mon.chart.reward": ("Reward", "奖励"),
    "mon.chart.entropy": ("Entropy", "熵"),
    "mon.chart.value_loss": ("Value loss", "价值损失"),
    "mon.chart.response_length": ("Response length", "回答长度"),
    "mon.chart.logps": ("Log-probabilities (chosen / rejected)", "对数概率（选中 / 拒绝）"),
    "mon.chart.logits": ("Mean logits (chosen / rejected)", "平均 logits（选中 / 拒绝）"),
    "mon.chart.mean_token_accuracy": ("Token accuracy", "token 准确率"),
    "mon.rl_title": ("### More metrics (rewards, margins, accuracies, KL, ...)", "### 更多指标（奖励、差值、准确率、KL 等）"),
    "mon.diff": ("Config differences between the selected runs", "所选运行之间的配置差异"),
    "mon.diff_none": ("Pick two or more runs to see how their configs differ.", "选择两个或更多运行以查看配置差异。"),
    "mon.diff_same": ("The selected runs have the same config.", "所选运行的配置相同。"),
    "mon.no_runs": ("No runs yet under `{root}`. Start one in the Train tab.", "`{root}` 下还没有运行记录，请在“训练”页开始一次训练。"),
    "mon.run_line": ("**{run}**: {state} · step {step}/{max}{loss}", "**{run}**：{state} · 第 {step}/{max} 步{loss}"),
    "mon.failed": ("**{run}** failed ({code}). Last lines of its log:", "**{run}** 失败（{code}）。日志最后几行："),
    "mon.error": ("Error: {error}", "错误：{error}"),
    "mon.col.run": ("run", "运行"),
    "mon.col.state": ("state", "状态"),
    "mon.col.method": ("method", "方法"),
    "mon.col.step": ("step", "步数"),
    "mon.col.loss": ("final loss", "最终损失"),
    "mon.col.started": ("started", "开始时间"),
    "mon.col.key": ("key", "配置项"),
    # -- export tab --------------------------------------------------------------------------------------------------
    "export.run": ("Runs to export", "要导出的运行"),
    "export.run_info": ("One run: merge its adapter. Several: a weighted merge (see below).",
                        "选一个运行：合并其适配器；选多个：加权合并（见下方）。"),
    "export.adapter": ("Adapter, run or model folders (one per line; filled from the runs, any folder works)",
                       "适配器、运行或模型目录（每行一个；由所选运行填充，也可填写任意目录）"),
    "export.combine_title": ("Combine several adapters (weighted merge)", "组合多个适配器（加权合并）"),
    "export.weights": ("Weights", "权重"),
    "export.weights_info": ("One per folder, comma-separated; with one folder leave empty for a plain merge",
                            "每个目录一个，逗号分隔；只有一个目录时留空即为普通合并"),
    "export.combine": ("Combination", "组合方式"),
    "export.combine_info": ("cat: exact weighted sum; linear/ties/dare_*: PEFT add_weighted_adapter (same rank needed)",
                            "cat：精确加权求和；linear/ties/dare_*：PEFT add_weighted_adapter（需相同秩）"),
    "export.density": ("Density", "保留密度"),
    "export.density_info": ("Fraction of entries kept (ties, dare, magnitude_prune)", "保留的参数比例（ties、dare、magnitude_prune）"),
    "export.as": ("Save as", "保存为"),
    "export.as_model": ("merged model", "合并后的模型"),
    "export.as_adapter": ("combined adapter", "组合后的适配器"),
    "export.out": ("Output folder (empty = $STUDIO_HOME/exports/<run>)", "输出目录（留空为 $STUDIO_HOME/exports/<运行>）"),
    "export.dtype": ("Weights dtype", "权重精度"),
    "export.gguf": ("Also GGUF + Ollama Modelfile", "同时导出 GGUF 与 Ollama Modelfile"),
    "export.gguf_info": ("Llama-architecture models (e.g. the default model)", "仅限 Llama 架构模型（如默认模型）"),
    "export.overwrite": ("Replace an earlier export in the output folder (any other folder is never replaced)",
                         "替换输出目录中先前的导出（其他目录从不替换）"),
    "export.merge": ("Export", "导出"),
    "export.open_chat": ("Open in Chat", "在对话页打开"),
    "export.command": ("The same export from a shell", "在终端中执行同样的导出"),
    "export.runs_as": ("the studio runs", "工作室实际运行"),
    "export.checks": ("Check: logits of what was saved vs. its source, per prompt", "校验：逐条提示词比较保存结果与来源的 logits"),
    "export.details": ("Details (raw result, log)", "详情（原始结果、日志）"),
    "export.result": ("Result", "结果"),
    "export.log": ("Log", "日志"),
    "export.col.check": ("check", "校验"),
    "export.col.prompt": ("prompt", "提示词"),
    "export.col.diff": ("max abs logit diff", "最大 logit 绝对差"),
    "export.col.top1": ("top-1 agreement", "top-1 一致率"),
    "export.col.tol": ("tolerance", "容差"),
    "export.col.result": ("result", "结果"),
    "export.check_saved": ("saved {dtype} folder", "保存的 {dtype} 模型"),
    "export.check_merge": ("merge alone (in memory)", "仅合并（内存中）"),
    "export.all": ("all prompts", "全部提示词"),
    "export.pass": ("passed", "通过"),
    "export.fail": ("FAILED", "未通过"),
    "export.state.running": ("exporting", "导出中"),
    "export.state.finished": ("done", "完成"),
    "export.state.failed": ("failed", "失败"),
    "export.state.cancelled": ("cancelled", "已取消"),
    "export.cancel": ("Cancel export", "取消导出"),
    "export.cancelled": ("Export cancelled: the studio export child was stopped.", "导出已取消：studio export 子进程已停止。"),
    "export.removed": ("Removed what it had created: {paths}.", "已删除它创建的内容：{paths}。"),
    "export.removed_none": ("It had created nothing to remove; existing folders were kept.",
                            "它尚未创建任何内容；已有的目录保持不变。"),
    "export.nothing_running": ("No export is running.", "没有正在运行的导出。"),
    "export.reattached": ("Showing the latest export again (it kept running while the page was closed).",
                          "重新显示最近一次导出（页面关闭期间它仍在运行）。"),
    "export.done": ("Saved **{out}** ({size} on disk, {seconds:.0f} s). Check passed: largest logit difference {diff} "
                    "(tolerance {tol}).",
                    "已保存 **{out}**（占用 {size}，用时 {seconds:.0f} 秒）。校验通过：最大 logit 差异 {diff}（容差 {tol}）。"),
    "export.check_failed": ("Verification failed, nothing was saved:", "校验未通过，未保存任何内容："),
    "export.failed": ("Export failed:", "导出失败："),
    "export.refused": ("Not started:", "未开始："),
    "export.pick": ("Pick a run or type an adapter folder.", "请选择一个运行或填写适配器目录。"),
    "export.weights_bad": ("Weights '{weights}': expected comma-separated numbers, e.g. 0.7, 0.3.",
                           "权重“{weights}”格式不对，应为逗号分隔的数字，例如 0.7, 0.3。"),
    "export.weights_count": ("{n} folder(s) but {got} weight(s): give one weight per folder.",
                             "共 {n} 个目录但有 {got} 个权重：每个目录需要一个权重。"),
    "export.not_export": ("`{out}` exists, is not empty and was not made by an export: an export never replaces it. "
                          "Choose a new or empty folder.", "`{out}` 已存在且非空，且不是导出生成的目录：导出绝不会替换它。请换一个新的或空的目录。"),
    "export.occupied": ("`{out}` exists and is not empty. Tick \"Replace a non-empty output folder\" to replace it, or choose "
                        "another folder.", "`{out}` 已存在且非空。勾选“替换非空的输出目录”以替换，或换一个目录。"),
    "export.gguf_line": ("GGUF {qtype}: `{path}` ({size}); round trip through transformers: max abs diff {diff} (tolerance "
                         "{tol}), top-1 {top1}, tokenizer {tok}: **{result}**. Ollama: `{modelfile}`",
                         "GGUF {qtype}：`{path}`（{size}）；经 transformers 读回：最大绝对差 {diff}（容差 {tol}），top-1 {top1}，"
                         "分词器{tok}：**{result}**。Ollama：`{modelfile}`"),
    "export.tok_same": ("identical", "一致"),
    "export.tok_diff": ("DIFFERENT", "不一致"),
    # -- chat tab ----------------------------------------------------------------------------------------------------
    "chat.model": ("Base model", "基础模型"),
    "chat.model_info": ("'default', a local model folder or a hub id", "'default'、本地模型目录或 Hub ID"),
    "chat.run": ("Tuned: a run or an export", "微调模型：选择运行或导出结果"),
    "chat.adapter": ("Tuned: adapter, run folder, merged model folder or .gguf file",
                     "微调模型：适配器、运行目录、合并后的模型目录或 .gguf 文件"),
    "chat.separate": ("The tuned side is a {kind}: it is loaded as a second model next to the base (about twice the "
                      "memory of an adapter, which shares the base copy).",
                      "微调侧是{kind}：它会作为第二个模型与基础模型一同加载（内存约为适配器方式的两倍，适配器与基础模型共用一份权重）。"),
    "chat.kind.model": ("full model (merged or fully trained)", "完整模型（合并或全量训练）"),
    "chat.kind.gguf": ("GGUF file (de-quantized to float32)", "GGUF 文件（反量化为 float32）"),
    "chat.system": ("System prompt", "系统提示词"),
    "chat.temperature": ("Temperature (0 = greedy)", "温度（0 为贪心解码）"),
    "chat.top_p": ("Top-p", "Top-p"),
    "chat.max_new": ("Max new tokens", "最大生成 token 数"),
    "chat.base": ("Base model", "基础模型"),
    "chat.tuned": ("Tuned model", "微调后模型"),
    "chat.prompt": ("Message", "消息"),
    "chat.prompt_ph": ("Ask both models the same thing…", "向两个模型提同一个问题…"),
    "chat.send": ("Send", "发送"),
    "chat.clear": ("Clear", "清空"),
    "chat.no_tuned": ("(pick a run or an adapter to compare)", "（选择一个运行或适配器以对比）"),
    "chat.loading": ("Loading {model}…", "正在加载 {model}…"),
    "chat.empty": ("Type a message first.", "请先输入消息。"),
    "chat.settings": ("Generation settings", "生成参数"),
    # -- self-cognition card (train tab) -----------------------------------------------------------------------------
    "ident.title": ("One-click self-cognition: give the model a new name and maker",
                    "一键自我认知：给模型一个新名字和开发者"),
    "ident.intro": ("Fills the shipped identity questions (106 English + 106 Chinese) with your names, mixes in general "
                    "answers of the base model so it forgets nothing, trains LoRA (a few minutes on a laptop CPU), then "
                    "asks held-out questions to the base and the tuned model. Chinese questions get the Chinese names.",
                    "用你的名字填充内置的自我认知问答（中英文各 106 条），混入基础模型自己的通用回答以免遗忘，训练 LoRA"
                    "（笔记本 CPU 上几分钟），再用未参与训练的问题对比基础模型与微调后模型。中文问题使用中文名字。"),
    "ident.name_en": ("Name (English)", "名字（英文）"),
    "ident.name_zh": ("Name (Chinese)", "名字（中文）"),
    "ident.author_en": ("Maker (English)", "开发者（英文）"),
    "ident.author_zh": ("Maker (Chinese)", "开发者（中文）"),
    "ident.preview": ("Preview rows", "预览数据"),
    "ident.save": ("Save as dataset", "保存为数据集"),
    "ident.start": ("Start self-cognition", "开始自我认知训练"),
    "ident.open_chat": ("Chat with it", "去对话"),
    "ident.rows": ("Identity rows ({n} in all, first {shown} shown)", "自我认知数据（共 {n} 条，显示前 {shown} 条）"),
    "ident.saved": ("Saved {n} rows to `{path}`: open it in the Data tab to edit, or add it to data.datasets.",
                    "已保存 {n} 条到 `{path}`：可在“数据”页打开编辑，或加入 data.datasets。"),
    "ident.started": ("Run **{run}** started: data, training, then the before/after probe.",
                      "运行 **{run}** 已启动：准备数据、训练，然后进行前后对比测试。"),
    "ident.queued": ("Run **{run}** is queued (position {pos}).", "运行 **{run}** 已排队（第 {pos} 位）。"),
    "ident.probing": ("Training done: asking the base and the tuned model the probe questions…",
                      "训练完成：正在向基础模型和微调后模型提问测试…"),
    "ident.summary": ("**Identity** (held-out questions answered with the new name{author}; 4 settings each): {langs}. "
                      "**Retention** ({split} split): {ret} of the general questions the base answered right are still "
                      "right ({kept}/{known}); **KL**(tuned‖base) on the base's own answers: {kl} nats/token.",
                      "**自我认知**（未参与训练的问题中答出新名字{author}的比例；每题 4 种设置）：{langs}。**知识保持**（{split} "
                      "划分）：基础模型答对的通用问题中，微调后仍答对 {ret}（{kept}/{known}）；在基础模型自己的回答上的 "
                      "**KL**（微调‖基础）：每 token {kl} nats。"),
    "ident.weakest": (" (weakest: {setting} {score})", "（最弱：{setting} {score}）"),
    "ident.setting.none": ("no system prompt", "无系统提示"),
    "ident.setting.default_system": ("default system prompt", "默认系统提示"),
    "ident.setting.user_system": ("user's system prompt", "用户系统提示"),
    "ident.setting.second_turn": ("second turn", "第二轮对话"),
    "ident.view": ("Show", "显示"),
    "ident.view.all": ("all (problems first)", "全部（问题在前）"),
    "ident.view.flipped": ("flipped ✓↔✗", "结果翻转的"),
    "ident.view.lost": ("general ✓→✗", "通用题 ✓→✗"),
    "ident.view.identity": ("identity", "自我认知"),
    "ident.view.general": ("general", "通用题"),
    "ident.not_asked": ("(not asked: the base got it wrong)", "（未提问：基础模型答错了）"),
    "ident.and_author": (" and maker when asked; the maker alone when only the maker is asked",
                         "，问到开发者时答出开发者；只问开发者时答出开发者即可"),
    "ident.no_probe": ("This run has no probe.json (identity.probe was off, or the run did not finish).",
                       "该运行没有 probe.json（identity.probe 关闭，或运行未完成）。"),
    "ident.col.kind": ("Kind", "类型"),
    "ident.col.lang": ("Lang", "语言"),
    "ident.col.where": ("Setting / split", "设置 / 划分"),
    "ident.col.change": ("Change", "变化"),
    "ident.col.question": ("Question", "问题"),
    "ident.col.base": ("Base answer", "基础模型回答"),
    "ident.col.tuned": ("Tuned answer", "微调后回答"),
    # -- evaluate tab ------------------------------------------------------------------------------------------------
    "eval.run": ("Tuned: a run", "微调模型：选择运行"),
    "eval.model": ("Base model", "基础模型"),
    "eval.adapter": ("Tuned: adapter, run folder or merged model folder (empty: evaluate the base only)",
                     "微调模型：适配器、运行目录或合并后的模型目录（留空：只评估基础模型）"),
    "eval.source": ("Rows to evaluate", "评估哪些数据"),
    "eval.source_val": ("The run's held-out split (data.val_size)", "该运行留出的验证集（data.val_size）"),
    "eval.source_data": ("A dataset", "一个数据集"),
    "eval.data": ("Dataset PATH[#NAME][@MAX]", "数据集 PATH[#NAME][@MAX]"),
    "eval.metrics": ("Metrics", "指标"),
    "eval.metrics_info": ("em: exact match · f1: token F1 · rougeL · bleu: corpus BLEU-4 · ppl: perplexity of the references "
                          "(Chinese is scored per character)",
                          "em：完全匹配 · f1：词级 F1 · rougeL · bleu：语料级 BLEU-4 · ppl：参考答案的困惑度（中文按字计）"),
    "eval.custom": ("Custom metrics (FILE.py:FUNCTION, one per line)", "自定义指标（FILE.py:函数名，每行一个）"),
    "code.off": ("Off: this studio was started without --allow-code, so the page cannot run code on this machine (the "
                 "`studio` CLI can).", "已关闭：工作室启动时未加 --allow-code，网页不能在本机运行代码（命令行 `studio` 可以）。"),
    "code.metrics_dir": ("Custom metric files must be in {dir} (the studio was started with --allow-code).",
                         "自定义指标文件须放在 {dir}（工作室已以 --allow-code 启动）。"),
    "eval.custom_info": ("fn(prediction, reference) -> float per row, or fn(predictions, references) -> float for the corpus",
                         "fn(prediction, reference) -> float 逐行计算，或 fn(predictions, references) -> float 整体计算"),
    "eval.compare": ("Compare base and tuned (before / after)", "对比基础模型与微调模型（前 / 后）"),
    "eval.settings": ("Generation settings", "生成参数"),
    "eval.max_new": ("Max new tokens", "最大生成 token 数"),
    "eval.temperature": ("Temperature (0 = greedy)", "温度（0 为贪心解码）"),
    "eval.batch": ("Batch size", "批大小"),
    "eval.out": ("Output folder (empty: RUN/eval/<val or dataset>, or a new folder under the studio home); "
                 "rerunning into the same folder resumes",
                 "输出目录（留空：RUN/eval/<val 或数据集名>，或工作室目录下的新目录）；再次评估到同一目录会续跑"),
    "eval.start": ("Evaluate", "开始评估"),
    "eval.stop": ("Stop", "停止"),
    "eval.load": ("Show results of the output folder", "显示输出目录中的结果"),
    "eval.command": ("Command (the same evaluation from a shell)", "命令（在终端中运行同样的评估）"),
    "eval.table": ("Metrics", "指标"),
    "eval.changed": ("Rows that changed most (base -> tuned)", "变化最大的样本（基础 -> 微调）"),
    "eval.probe": ("Self-cognition probe of this run", "该运行的自我认知探测"),
    "eval.no_probe": ("This run has no probe.json (only self-cognition runs with identity.probe have one).",
                      "该运行没有 probe.json（仅开启 identity.probe 的自我认知运行会生成）。"),
    "eval.pick": ("Pick a run, an adapter or a base model, and the rows to evaluate.", "请选择运行、适配器或基础模型，以及要评估的数据。"),
    "eval.need_data": ("Give a dataset, or pick a run to use its held-out split.", "请填写数据集，或选择一个运行以使用其验证集。"),
    "eval.started": ("Evaluation started; results go to `{out}`.", "评估已开始，结果保存在 `{out}`。"),
    "eval.stopped": ("Stop sent. Rerun into the same folder to resume.", "已发送停止信号。再次评估到同一目录即可续跑。"),
    "eval.not_running": ("No evaluation is running.", "当前没有正在进行的评估。"),
    "eval.no_results": ("No results in `{out}` yet.", "`{out}` 中还没有结果。"),
    "eval.state.running": ("running", "运行中"),
    "eval.state.finished": ("finished", "已完成"),
    "eval.state.failed": ("failed", "失败"),
    "eval.state.stopped": ("stopped", "已停止"),
    "eval.phase.loading": ("loading the model", "加载模型"),
    "eval.phase.generate": ("generating", "生成中"),
    "eval.phase.loss": ("scoring the references (perplexity)", "计算参考答案困惑度"),
    "eval.phase.lm-eval": ("running lm-eval", "运行 lm-eval"),
    "eval.phase.done": ("done", "完成"),
    "eval.rows": ("{done} / {total}", "{done} / {total}"),
    "eval.lm_title": ("Benchmarks (lm-evaluation-harness)", "基准测试（lm-evaluation-harness）"),
    "eval.lm_tasks": ("Tasks (comma-separated; studio_qa_en, studio_qa_zh ship with the studio; arc_easy etc. need the hub)",
                      "任务（逗号分隔；studio_qa_en 与 studio_qa_zh 随工作室提供，arc_easy 等需联网）"),
    "eval.lm_limit": ("Rows per task (0 = all)", "每个任务的样本数（0 为全部）"),
    "eval.lm_run": ("Run benchmarks", "运行基准测试"),
    "eval.lm_missing": ("lm-evaluation-harness is not installed. Install it into the studio's environment: "
                        "`.venv/bin/pip install lm-eval`, then restart the studio.",
                        "未安装 lm-evaluation-harness。请在工作室环境中安装：`.venv/bin/pip install lm-eval`，然后重启工作室。"),
    "eval.lm_note": ("Uses lm-eval's Python API on a local model folder (base, merged, or base + adapter). The studio's "
                     "own tasks read local JSON (assets/lm_eval); task data hosted on the hub needs the network.",
                     "通过 lm-eval 的 Python API 评估本地模型目录（基础、合并或基础 + 适配器）。工作室自带任务读取本地 JSON"
                     "（assets/lm_eval）；托管在 Hub 上的任务数据需要联网。"),
    "eval.lm_need_tasks": ("Type at least one task name.", "请至少填写一个任务名。"),
    # -- generic -----------------------------------------------------------------------------------------------------
    "err.generic": ("Error: {error}", "错误：{error}"),
}


STRINGS.update(DATA_STRINGS)  # the Data tab
STRINGS.update(ARENA_STRINGS)  # the arena and the server panel
STRINGS.update(INSIGHT_STRINGS)  # the plan card, data doctor and chart controls (kept in their own file for size)


def t(key: Msg, lang: str = "en", **fmt: Any) -> str:
    """The text of ``key`` in ``lang`` (English when the language is unknown), formatted with ``fmt``."""
    pair = key if isinstance(key, tuple) else STRINGS.get(key)
    if pair is None:
        raise KeyError(f"no UI string '{key}' in studio/ui/i18n.py")
    text = pair[1] if lang == "zh" and pair[1] else pair[0]
    return text.format(**fmt) if fmt else text


def state_name(state: str, lang: str) -> str:
    return t(f"state.{state}", lang) if f"state.{state}" in STRINGS else state


class Texts:
    """Creates components with translated texts and remembers them for a language switch (one per tab build)."""

    def __init__(self, lang: str):
        self.lang = lang
        self.items: list[tuple[Any, dict[str, Msg]]] = []

    def __call__(self, key: Msg, **fmt: Any) -> str:
        return t(key, self.lang, **fmt)

    def make(self, cls, **kwargs):
        """``cls(**kwargs)`` where label/info/value/placeholder/title are i18n keys (or (en, zh) pairs)."""
        keys = {k: kwargs.pop(k) for k in ("label", "info", "value", "placeholder", "title") if _is_msg(kwargs.get(k))}
        component = cls(**kwargs, **{k: t(v, self.lang) for k, v in keys.items()})
        self.items.append((component, keys))
        return component

    def update_map(self, lang: str) -> dict:
        """component -> the keyword arguments of its ``gr.update`` in ``lang``."""
        return {component: {k: t(v, lang) for k, v in keys.items()} for component, keys in self.items}


def _is_msg(value: Any) -> bool:
    return (isinstance(value, str) and value in STRINGS) or (
        isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value))


def missing() -> list[str]:
    """Keys lacking a translation (an empty Chinese string falls back to English and counts as missing)."""
    return [k for k, (en, zh) in STRINGS.items() if not en or not zh]


if __name__ == "__main__":
    gaps = missing()
    print("\n".join(gaps) if gaps else f"{len(STRINGS)} strings, all in {', '.join(LANGS)}")
