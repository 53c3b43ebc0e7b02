"""``studio chat [--model M] [--adapter DIR] [--prompt TEXT | --prompts-file F] [--json]``.

Interactive and streaming by default (``/reset`` clears the history, ``/quit`` leaves); with ``--prompt`` or
``--prompts-file`` it answers each prompt independently and, with ``--json``, prints one JSON object per prompt
(``{"prompt": ..., "answer": ...}``). Greedy unless ``--temperature`` > 0.
"""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("chat", help="chat with a base model or a tuned one (adapter, run folder, merged folder or GGUF)")
    p.add_argument("--model", default="default", help="base model: 'default', a local folder or a hub id")
    p.add_argument("--adapter", help="a run folder, a LoRA adapter folder, a merged model folder (studio export) or a "
                   ".gguf file (de-quantized to float32; loaded as a second model next to the base)")
    p.add_argument("--prompt", action="append", default=[], help="answer this prompt and exit (repeatable)")
    p.add_argument("--prompts-file", help="answer every line of this file and exit")
    p.add_argument("--json", action="store_true", help="one JSON object per prompt: {prompt, answer}")
    p.add_argument("--system", default="", help="system prompt (default: the chat template's own)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--base", action="store_true", help="with --adapter: answer with the base model (adapter off)")
    p.set_defaults(run=run)


def _prompts(args) -> list[str]:
    prompts = list(args.prompt)
    if args.prompts_file:
        with open(args.prompts_file, encoding="utf-8") as fh:
            prompts += [line.strip() for line in fh if line.strip()]
    return prompts


def run(args) -> int:
    from studio.engine.models import ModelLoadError, skip_bitsandbytes

    skip_bitsandbytes()  # chat never quantizes; saves the bitsandbytes import (torch.compile warm-up)
    from studio.engine.generate import ChatModel, build_messages

    try:
        prompts = _prompts(args)
        chat = ChatModel(args.model, args.adapter)
    except (OSError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    use_adapter = chat.has_adapter and not args.base
    gen = dict(use_adapter=use_adapter, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
               repetition_penalty=args.repetition_penalty)
    if prompts:
        for prompt in prompts:
            answer = ""
            for answer in chat.stream(build_messages(prompt, args.system), **gen):
                pass
            print(json.dumps({"prompt": prompt, "answer": answer}, ensure_ascii=False) if args.json else answer, flush=True)
        return 0
    return _interactive(chat, args, gen)


def _interactive(chat, args, gen) -> int:
    from studio.engine.generate import build_messages

    who = "tuned" if gen["use_adapter"] else "base"
    print(f"Chatting with the {who} model ({chat.model_name}). /reset clears the history, /quit leaves.", file=sys.stderr)
    history: list[dict] = []
    while True:
        try:
            prompt = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if prompt in ("/quit", "/exit"):
            return 0
        if prompt == "/reset":
            history = []
            continue
        if not prompt:
            continue
        shown = 0
        answer = ""
        sys.stdout.write("model> ")
        for answer in chat.stream(build_messages(prompt, args.system, history), **gen):
            sys.stdout.write(answer[shown:])
            sys.stdout.flush()
            shown = len(answer)
        sys.stdout.write("\n")
        history += [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
