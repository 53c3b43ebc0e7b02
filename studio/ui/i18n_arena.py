"""UI strings of the Chat tab's arena and of the OpenAI-compatible server panel, English and Chinese (merged into
``i18n.STRINGS``; kept in their own file for size)."""

from __future__ import annotations

STRINGS: dict[str, tuple[str, str]] = {
    # -- chat tab: arena and OpenAI-compatible server (ui/panels/arena.py, ui/panels/serve.py) ----------------------------
    "arena.title": ("Arena: blind votes -> preference data -> DPO", "竞技场：盲评投票 -> 偏好数据 -> DPO"),
    "arena.intro": ("2 to 4 models answer the same prompt. Blind: the sides are shuffled and named only after your vote. "
                    "Each vote adds chosen/rejected pairs to a preference dataset (Data tab, with versions).",
                    "2 到 4 个模型回答同一个问题。盲评时顺序随机，投票后才揭晓各是哪个模型。每次投票都会把 chosen/rejected "
                    "偏好对追加到偏好数据集（可在“数据”页查看，带版本）。"),
    "arena.models": ("Models (2 to 4)", "模型（2 到 4 个）"),
    "arena.models_info": ("the base model (settings above), runs, exports, GGUF files, or a path",
                          "基础模型（上方设置）、运行、导出结果、GGUF 文件或路径"),
    "arena.base_choice": ("base model", "基础模型"),
    "arena.blind": ("Blind", "盲评"),
    "arena.dataset": ("Preference dataset", "偏好数据集"),
    "arena.prompt": ("Prompt", "问题"),
    "arena.ask": ("Ask all", "全部提问"),
    "arena.edit_from": ("Start the better answer from", "以此回答为底稿"),
    "arena.better": ("Better answer (optional)", "更好的回答（可选）"),
    "arena.better_info": ("Written or edited by you, it becomes 'chosen' and every shown answer 'rejected'.",
                          "由你撰写或修改，它将作为 chosen，其余显示的回答作为 rejected。"),
    "arena.vote_tie": ("Tie", "平局"),
    "arena.vote_bad": ("All bad", "都不好"),
    "arena.table": ("Win rates per pair (ties and 'all bad' count half)", "两两胜率（平局与“都不好”各计半场）"),
    "arena.train": ("Train DPO on my votes", "用我的投票训练 DPO"),
    "arena.answering": ("Answering… (blind: the models are named after your vote)", "回答中…（盲评：投票后揭晓模型）"),
    "arena.vote_now": ("Vote: which answer is better?", "请投票：哪个回答更好？"),
    "arena.no_round": ("Ask a prompt first; each round takes one vote.", "请先提问；每轮只能投一次票。"),
    "arena.reveal": ("Models:", "模型："),
    "arena.saved": ("Saved {pairs} pair(s) to `{dataset}` (version {version}, {rows} rows).",
                    "已保存 {pairs} 个偏好对到 `{dataset}`（版本 {version}，共 {rows} 行）。"),
    "arena.saved_none": ("Vote counted; no pair written (a tie or 'all bad' needs a better answer to make one).",
                         "投票已计入；未写入偏好对（平局或“都不好”需要填写更好的回答）。"),
    "arena.train_started": ("DPO run **{run}** submitted on `{dataset}` (see the Train tab).",
                            "已提交 DPO 运行 **{run}**，数据为 `{dataset}`（见“训练”页）。"),
    "serve.title": ("Serve with an OpenAI-compatible API", "以 OpenAI 兼容 API 提供服务"),
    "serve.intro": ("Starts `studio serve` for the tuned side above (or the base model) on 127.0.0.1 with a new API key.",
                    "为上方的微调模型（或基础模型）在 127.0.0.1 上启动 `studio serve`，并生成新的 API 密钥。"),
    "serve.start": ("Start server", "启动服务"),
    "serve.stop": ("Stop server", "停止服务"),
    "serve.snippet": ("Python client (openai)", "Python 客户端（openai）"),
    "serve.serving": ("Serving **{models}** at `{url}`  \nAPI key: `{api_key}`  \nCommand: `{command}`",
                      "正在提供 **{models}**，地址 `{url}`  \nAPI 密钥：`{api_key}`  \n命令：`{command}`"),
    "serve.starting": ("Starting (loading the model)… `{command}`", "启动中（加载模型）… `{command}`"),
    "serve.stopped": ("The server is stopped.", "服务已停止。"),
    "serve.failed": ("The server exited:", "服务已退出："),
    "serve.none": ("No server started from this page is running.", "没有从本页面启动的服务在运行。"),
}
