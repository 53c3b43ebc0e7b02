"""Security tier: a corpus of bad inputs fed to the `studio` command's real code paths (issue #13, item 11).

Every case must be a *named error*: a non-zero exit, a message holding the expected text (the file and line/row, or the
config key and its allowed range), no traceback, and nothing written. A case that raises is a *traceback*, one that exits
0 is *accepted*. The corpus runs in-process (``studio.cli.main``) for speed and prints

    bad inputs N: N named errors, 0 tracebacks, 0 accepted

(run pytest with -s to see it); a few cases also run as a real ``python -m studio`` to check exit code 2 and stderr.
Each case is a data row: (name, files, argv, expected text); ``{d}`` stands for the case's own folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from studio.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOOD = '{"instruction": "hi", "input": "", "output": "hello"}\n'
CFG = "data:\n  datasets: ['{d}/good.jsonl']\n"  # a valid config to add one bad line to
TRAIN = ["train", "{d}/c.yaml", "--check"]
INSPECT = ["data", "inspect", "{d}/f.jsonl", "--json", "--model", "none"]


def inspect(name: str, *extra: str) -> list[str]:
    return ["data", "inspect", "{d}/" + name, "--json", "--model", "none", *extra]


def info(entries) -> dict:
    """A dataset folder: its dataset_info.json (``entries`` dumped as JSON unless already text) and one good file."""
    text = entries if isinstance(entries, (str, bytes)) else json.dumps(entries)
    return {"ds/dataset_info.json": text, "ds/good.jsonl": GOOD}


def parquet_with_bytes(path: Path) -> None:
    import pandas as pd

    pd.DataFrame({"instruction": ["hi"], "output": [b"\x00\x01binary"]}).to_parquet(path)


def symlink_to(target: str):
    return lambda path: path.symlink_to(path.parent / target)


def folder(path: Path) -> None:
    path.mkdir(parents=True)


def long_line(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.write(GOOD.encode())
        fh.write(b'{"instruction": "' + b"x" * (9 * 2**20) + b'", "output": "y"}\n')


ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
ALIAS_CHAIN = "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 10))
DEEP_JSON = "[" * 100_000 + "]" * 100_000
T = "training:\n"

CASES = [
    # -- config files: the YAML itself -------------------------------------------------------------------------------------
    ("yaml alias bomb", {"c.yaml": ALIAS_BOMB}, TRAIN, "{d}/c.yaml: line 1: anchors and aliases"),
    ("yaml 10-deep alias chain", {"c.yaml": ALIAS_CHAIN}, TRAIN, "{d}/c.yaml: line 1: anchors and aliases"),
    ("yaml anchor on a section", {"c.yaml": CFG + "training: &t\n  max_steps: 3\n"}, TRAIN, "line 3: anchors and aliases"),
    ("yaml merge key with alias", {"c.yaml": CFG + "base: &b {r: 4}\nlora:\n  <<: *b\n"}, TRAIN, "line 3: anchors and"),
    ("yaml duplicate key", {"c.yaml": CFG + T + "  learning_rate: 1.0e-4\n  learning_rate: 2.0e-4\n"}, TRAIN,
     "{d}/c.yaml: line 5: duplicate key 'learning_rate' (first given on line 4)"),
    ("yaml duplicate section", {"c.yaml": CFG + T + "  max_steps: 1\n" + T + "  max_steps: 2\n"}, TRAIN,
     "line 5: duplicate key 'training' (first given on line 3)"),
    ("yaml duplicate key, flow style", {"c.yaml": CFG + "lora: {r: 4, r: 8}\n"}, TRAIN, "line 3: duplicate key 'r'"),
    ("yaml not UTF-8", {"c.yaml": (CFG + "output:\n  run_name: caf\xe9\n").encode("latin-1")}, TRAIN,
     "{d}/c.yaml: line 4: not UTF-8 text"),
    ("yaml UTF-16", {"c.yaml": (CFG + "lora:\n  r: 4\n").encode("utf-16")}, TRAIN, "{d}/c.yaml: the file is UTF-16 text"),
    ("yaml over 1 MB", {"c.yaml": CFG + "# " + "x" * (1 << 20) + "\n"}, TRAIN, "{d}/c.yaml: over the 1024 KB limit"),
    ("yaml nested 50 deep", {"c.yaml": CFG + "lora:\n  r: " + "[" * 50 + "]" * 50 + "\n"}, TRAIN,
     "line 4: nested more than 20 levels deep"),
    ("yaml syntax error", {"c.yaml": CFG + "lora:\n  r: [4\n"}, TRAIN, "{d}/c.yaml: line 5: not valid YAML"),
    ("yaml python tag", {"c.yaml": CFG + "model:\n  name_or_path: !!python/object/apply:os.system [ls]\n"}, TRAIN,
     "{d}/c.yaml: line 4: not valid YAML"),
    ("yaml NUL character", {"c.yaml": CFG + "output:\n  run_name: a\0b\n"}, TRAIN,
     "{d}/c.yaml: line 4: not valid YAML: unacceptable character #x0000"),
    ("yaml int of 5000 digits", {"c.yaml": CFG + "lora:\n  r: " + "9" * 5000 + "\n"}, TRAIN, "{d}/c.yaml: not valid YAML"),
    ("yaml top level is a list", {"c.yaml": "- a\n- b\n"}, TRAIN, "expected a mapping of sections at the top level"),
    ("yaml empty file", {"c.yaml": ""}, TRAIN, "data.datasets: no dataset given"),
    ("yaml BOM only", {"c.yaml": b"\xef\xbb\xbf"}, TRAIN, "data.datasets: no dataset given"),
    ("config file missing", {}, TRAIN, "{d}/c.yaml: config file not found"),
    ("config path is a folder", {"c.yaml": folder}, TRAIN, "{d}/c.yaml: a folder, not a config file"),
    # -- config files: values ----------------------------------------------------------------------------------------------
    ("cutoff_len 1e400", {"c.yaml": CFG + T + "  cutoff_len: 1e400\n"}, TRAIN,
     "training.cutoff_len: '1e400' is not a finite number (expected >= 8 and <= 1000000)"),
    ("cutoff_len 1.0e+400", {"c.yaml": CFG + T + "  cutoff_len: 1.0e+400\n"}, TRAIN,
     "training.cutoff_len: inf is not a finite number"),
    ("learning_rate .nan", {"c.yaml": CFG + T + "  learning_rate: .nan\n"}, TRAIN,
     "training.learning_rate: nan is not a finite number (expected > 0.0 and <= 1.0)"),
    ("num_train_epochs .nan", {"c.yaml": CFG + T + "  num_train_epochs: .nan\n"}, TRAIN,
     "training.num_train_epochs: nan is not a finite number"),
    ("max_grad_norm .inf", {"c.yaml": CFG + T + "  max_grad_norm: .inf\n"}, TRAIN,
     "training.max_grad_norm: inf is not a finite number (expected >= 0.0 and <= 1000000.0)"),
    ("kl_coef -.inf", {"c.yaml": CFG + "rl:\n  kl_coef: -.inf\n"}, TRAIN, "rl.kl_coef: -inf is not a finite number"),
    ("max_steps 1e14", {"c.yaml": CFG + T + "  max_steps: 1e14\n"}, TRAIN,
     "training.max_steps=100000000000000: must be >= -1 and <= 10000000"),
    ("seed 2**40", {"c.yaml": CFG + T + f"  seed: {2**40}\n"}, TRAIN, "training.seed=1099511627776: must be >= 0 and <="),
    ("warmup_steps huge", {"c.yaml": CFG + T + "  warmup_steps: 99999999999\n"}, TRAIN,
     "training.warmup_steps=99999999999: must be >= 0 and <= 10000000"),
    ("datasets as a mapping", {"c.yaml": "data:\n  datasets: {a: 1}\n"}, TRAIN,
     "data.datasets: {'a': 1} is not a valid list (expected a list of text entries"),
    ("datasets entry a mapping", {"c.yaml": "data:\n  datasets: [{a: 1}]\n"}, TRAIN, "data.datasets: [{'a': 1}] is not a valid list"),
    ("datasets a number", {"c.yaml": "data:\n  datasets: 5\n"}, TRAIN, "data.datasets: 5 is not a valid list"),
    ("unknown section", {"c.yaml": CFG + "trainig:\n  max_steps: 1\n"}, TRAIN,
     "{d}/c.yaml: unknown section 'trainig' (did you mean 'training'?)"),
    ("unknown key", {"c.yaml": CFG + T + "  lerning_rate: 1\n"}, TRAIN,
     "{d}/c.yaml: unknown key 'training.lerning_rate' (did you mean 'learning_rate'?)"),
    ("numeric key", {"c.yaml": CFG + T + "  1: 2\n"}, TRAIN, "{d}/c.yaml: unknown key 'training.1'"),
    ("section is a list", {"c.yaml": CFG + "lora: [1, 2]\n"}, TRAIN, "section 'lora' must be a mapping"),
    ("int field given text", {"c.yaml": CFG + "lora:\n  r: many\n"}, TRAIN, "lora.r: 'many' is not a valid int"),
    ("int field given 8.5", {"c.yaml": CFG + "lora:\n  r: 8.5\n"}, TRAIN, "lora.r: 8.5 is not a valid int"),
    ("int field given '8.5' text", {"c.yaml": CFG + "lora:\n  r: '8.5'\n"}, TRAIN, "lora.r: '8.5' is not a valid int"),
    ("int field given a bool", {"c.yaml": CFG + "lora:\n  r: true\n"}, TRAIN, "lora.r: True is not a valid int"),
    ("float field given a bool", {"c.yaml": CFG + T + "  learning_rate: yes\n"}, TRAIN,
     "training.learning_rate: True is not a valid float"),
    ("float field given a list", {"c.yaml": CFG + T + "  learning_rate: [1]\n"}, TRAIN,
     "training.learning_rate: [1] is not a valid float"),
    ("float field given a date", {"c.yaml": CFG + T + "  learning_rate: 2024-01-01\n"}, TRAIN,
     "training.learning_rate: datetime.date(2024, 1, 1) is not a valid float"),
    ("bool field given 5", {"c.yaml": "data:\n  datasets: ['{d}/good.jsonl']\n  train_on_prompt: 5\n"}, TRAIN,
     "data.train_on_prompt: 5 is not a valid bool"),
    ("text field given a list", {"c.yaml": CFG + "model:\n  name_or_path: [a, b]\n"}, TRAIN,
     "model.name_or_path: ['a', 'b'] is not a valid str"),
    ("text field given a mapping", {"c.yaml": CFG + "output:\n  run_name: {a: 1}\n"}, TRAIN,
     "output.run_name: {'a': 1} is not a valid str"),
    ("text field with a NUL escape", {"c.yaml": CFG + 'model:\n  name_or_path: "a\\0b"\n'}, TRAIN,
     "model.name_or_path: 'a\\x00b' is not a valid str"),
    ("negative batch size", {"c.yaml": CFG + T + "  per_device_train_batch_size: -4\n"}, TRAIN,
     "training.per_device_train_batch_size=-4: must be >= 1 and <= 4096"),
    ("negative max_samples", {"c.yaml": CFG.rstrip("\n") + "\n  max_samples: -1\n"}, TRAIN,
     "data.max_samples=-1: must be >= 0 and <= 1000000000"),
    ("choice not allowed", {"c.yaml": CFG + "method:\n  stage: magic\n"}, TRAIN,
     "method.stage='magic': must be one of sft, pt, rm, dpo"),
    ("val_size 2.5 rows", {"c.yaml": CFG.rstrip("\n") + "\n  val_size: 2.5\n"}, TRAIN,
     "data.val_size=2.5: a row count (>=1) must be a whole number"),
    ("unknown reward rule", {"c.yaml": CFG + "method:\n  stage: grpo\nrl:\n  reward_funcs: [magic]\n"}, TRAIN,
     "rl.reward_funcs: unknown reward 'magic'"),
    ("dataset that does not exist", {"c.yaml": "data:\n  datasets: ['{d}/nope.jsonl']\n"}, TRAIN,
     "data.datasets: {d}/nope.jsonl: no such file or folder"),
    ("dataset name too long", {"c.yaml": "data:\n  datasets: ['" + "n" * 5000 + "']\n"}, TRAIN,
     "data.datasets: 'nnnnnnnn"),
    ("model folder that does not exist", {"c.yaml": CFG + "model:\n  name_or_path: ./no/such/model\n"}, TRAIN,
     "model.name_or_path='./no/such/model': no such model folder"),
    ("dataset_info traversal via train", {"c.yaml": "data:\n  datasets: ['{d}/ds#x']\n",
                                          **info({"x": {"file_name": "../good.jsonl"}})}, TRAIN,
     "data.datasets: {d}/ds/dataset_info.json: entry 'x': file_name '../good.jsonl' must be a path inside"),
    # -- --set overrides (the same coercion and validation) ----------------------------------------------------------------
    ("--set learning_rate=nan", {"c.yaml": CFG}, TRAIN + ["--set", "training.learning_rate=nan"],
     "training.learning_rate: 'nan' is not a finite number (expected > 0.0 and <= 1.0)"),
    ("--set max_grad_norm=inf", {"c.yaml": CFG}, TRAIN + ["--set", "training.max_grad_norm=.inf"],
     "training.max_grad_norm: inf is not a finite number"),
    ("--set max_steps=1e14", {"c.yaml": CFG}, TRAIN + ["--set", "training.max_steps=1e14"],
     "training.max_steps=100000000000000: must be >= -1 and <= 10000000"),
    ("--set datasets={a: 1}", {"c.yaml": CFG}, TRAIN + ["--set", "data.datasets={a: 1}"],
     "data.datasets: {'a': 1} is not a valid list"),
    ("--set an alias", {"c.yaml": CFG}, TRAIN + ["--set", "data.datasets=[&a x, *a]"],
     "override 'data.datasets': line 1: anchors and aliases"),
    ("--set without =", {"c.yaml": CFG}, TRAIN + ["--set", "training.learning_rate"], "expected section.key=value"),
    ("--set without a section", {"c.yaml": CFG}, TRAIN + ["--set", "learning_rate=1"], "override 'learning_rate': use"),
    ("--set unknown key", {"c.yaml": CFG}, TRAIN + ["--set", "lora.rank=8"], "override: unknown key 'lora.rank'"),
    ("--set a bool for a count", {"c.yaml": CFG}, TRAIN + ["--set", "lora.r=true"], "lora.r: True is not a valid int"),
    ("--set a bad choice", {"c.yaml": CFG}, TRAIN + ["--set", "training.gradient_checkpointing=maybe"],
     "training.gradient_checkpointing='maybe': must be one of auto, on, off"),
    # -- dataset files ---------------------------------------------------------------------------------------------------
    ("json nested 100000 deep", {"f.json": DEEP_JSON}, inspect("f.json"), "{d}/f.json: lists/objects nested more than 100"),
    ("jsonl line nested 3000 deep", {"f.jsonl": GOOD + '{"a": ' + "[" * 3000 + "]" * 3000 + "}\n"}, INSPECT,
     "{d}/f.jsonl: line 2: lists/objects nested more than 100"),
    ("jsonl line nested 500 deep", {"f.jsonl": '{"a": ' + "[" * 500 + "]" * 500 + "}\n"}, INSPECT,
     "{d}/f.jsonl: line 1: lists/objects nested more than 100"),
    ("json row nested 500 deep", {"f.json": '[{"a": ' + "[" * 500 + "]" * 500 + "}]"}, inspect("f.json"),
     "{d}/f.json: row 1: lists/objects nested more than 100"),
    ("jsonl NaN cell", {"f.jsonl": GOOD + '{"instruction": "a", "output": NaN}\n'}, INSPECT,
     "{d}/f.jsonl: line 2: NaN is not a JSON value"),
    ("json Infinity cell", {"f.json": '[\n{"instruction": "a", "output": -Infinity}\n]'}, inspect("f.json"),
     "{d}/f.json: line 2: -Infinity is not a JSON value"),
    ("parquet binary column", {"f.parquet": parquet_with_bytes}, inspect("f.parquet"),
     "{d}/f.parquet: row 1: column 'output': holds binary data"),
    ("parquet that is text", {"f.parquet": GOOD}, inspect("f.parquet"), "{d}/f.parquet: cannot read as PARQUET"),
    ("jsonl UTF-16 with BOM", {"f.jsonl": GOOD.encode("utf-16")}, INSPECT, "{d}/f.jsonl: the file is UTF-16 text"),
    ("json UTF-16 without BOM", {"f.json": ("[" + GOOD + "]").encode("utf-16-le")}, inspect("f.json"),
     "{d}/f.json: the file looks like UTF-16 text"),
    ("csv UTF-32", {"f.csv": "instruction,output\na,b\n".encode("utf-32")}, inspect("f.csv"), "{d}/f.csv: the file is UTF-32"),
    ("jsonl UTF-16 BE", {"f.jsonl": GOOD.encode("utf-16-be")}, INSPECT, "{d}/f.jsonl: the file looks like UTF-16 text"),
    ("empty jsonl", {"f.jsonl": b""}, INSPECT, "{d}/f.jsonl: the file is empty"),
    ("empty csv", {"f.csv": b""}, inspect("f.csv"), "{d}/f.csv: the file is empty"),
    ("BOM-only json", {"f.json": b"\xef\xbb\xbf"}, inspect("f.json"), "{d}/f.json: the file is empty"),
    ("BOM-only csv", {"f.csv": b"\xef\xbb\xbf"}, inspect("f.csv"), "{d}/f.csv: the file is empty"),
    ("BOM-only jsonl", {"f.jsonl": b"\xef\xbb\xbf"}, INSPECT, "{d}/f.jsonl: the file has no rows"),
    ("blank-lines jsonl", {"f.jsonl": "\n  \n\n"}, INSPECT, "{d}/f.jsonl: the file has no rows"),
    ("header-only csv", {"f.csv": "instruction,output\n"}, inspect("f.csv"), "{d}/f.csv: the file has no rows"),
    ("json list of numbers", {"f.json": "[1, 2, 3]"}, inspect("f.json"), "{d}/f.json: row 1: expected a JSON object, got int"),
    ("json top level text", {"f.json": '"rows"'}, inspect("f.json"), "{d}/f.json: expected a JSON list of rows at the top"),
    ("json object of two lists", {"f.json": '{"a": [], "b": []}'}, inspect("f.json"), "got an object"),
    ("csv ragged: extra field", {"f.csv": "instruction,output\na,b\nc,d,e\n"}, inspect("f.csv"),
     "{d}/f.csv: line 3: 3 fields, but the header has 2"),
    ("csv ragged: missing field", {"f.csv": "instruction,output\na,b\nc\n"}, inspect("f.csv"),
     "{d}/f.csv: line 3: 1 fields, but the header has 2"),
    ("csv duplicate column", {"f.csv": "instruction,instruction,output\na,b,c\n"}, inspect("f.csv"),
     "{d}/f.csv: line 1: column 'instruction' appears twice"),
    ("csv unclosed quote", {"f.csv": 'instruction,output\n"a,b\nc,d\n'}, inspect("f.csv"), "{d}/f.csv: line"),
    ("jsonl that is a JSON array", {"f.jsonl": "[" + GOOD.strip() + "]\n"}, INSPECT,
     "{d}/f.jsonl: line 1: expected a JSON object, got list (a JSON array: save the file as .json)"),
    ("jsonl that is a pretty JSON array", {"f.jsonl": "[\n  " + GOOD.strip() + "\n]\n"}, INSPECT,
     "{d}/f.jsonl: line 1: invalid JSON"),
    ("jsonl bad line 2", {"f.jsonl": GOOD + '{"instruction": "a", \n'}, INSPECT, "{d}/f.jsonl: line 2: invalid JSON"),
    ("binary renamed .json", {"f.json": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01"}, inspect("f.json"),
     "{d}/f.json: this is a binary file"),
    ("latin-1 jsonl", {"f.jsonl": GOOD.encode() + '{"instruction": "café", "output": "x"}\n'.encode("latin-1")}, INSPECT,
     "{d}/f.jsonl: line 2: not UTF-8 text"),
    ("jsonl line over 8 MB", {"f.jsonl": long_line}, INSPECT, "{d}/f.jsonl: line 2: the row is over the 8 MB limit"),
    ("unsupported suffix", {"f.md": GOOD}, inspect("f.md"), "{d}/f.md: unsupported file type '.md'"),
    ("file that does not exist", {}, INSPECT, "{d}/f.jsonl: no such file or folder"),
    ("folder without data", {"empty": folder}, inspect("empty"), "{d}/empty: folder has no dataset_info.json and no"),
    ("#entry on a plain file", {"f.jsonl": GOOD}, inspect("f.jsonl#x"), "'#NAME' picks an entry"),
    # -- dataset_info.json folders ---------------------------------------------------------------------------------------
    ("dataset_info is a list", info([{"file_name": "good.jsonl"}]), inspect("ds"),
     "{d}/ds/dataset_info.json: expected an object of dataset entries"),
    ("dataset_info is {}", info({}), inspect("ds"), "{d}/ds/dataset_info.json: expected an object of dataset entries"),
    ("dataset_info invalid JSON", info('{"x": {"file_name": "good.jsonl",}}'), inspect("ds"),
     "{d}/ds/dataset_info.json: line 1: invalid JSON"),
    ("dataset_info not UTF-8", info('{"x": {"file_name": "caf\xe9.jsonl"}}'.encode("latin-1")), inspect("ds"),
     "{d}/ds/dataset_info.json: line 1: not UTF-8 text"),
    ("dataset_info NaN", info('{"x": {"file_name": "good.jsonl", "n": NaN}}'), inspect("ds"), "line 1: NaN is not a JSON"),
    ("dataset_info nested deep", info('{"x": ' + "[" * 5000 + "]" * 5000 + "}"), inspect("ds"), "nested more than 100"),
    ("entry is a number", info({"x": 5}), inspect("ds"), "{d}/ds/dataset_info.json: entry 'x': expected an object"),
    ("file_name: 5", info({"x": {"file_name": 5}}), inspect("ds"), "entry 'x': 'file_name' must be text, got a number"),
    ("columns: []", info({"x": {"file_name": "good.jsonl", "columns": []}}), inspect("ds"),
     "entry 'x': 'columns' must be an object, got a list"),
    ('tags: "x"', info({"x": {"file_name": "good.jsonl", "formatting": "sharegpt", "tags": "x"}}), inspect("ds"),
     "entry 'x': 'tags' must be an object, got text"),
    ('ranking: "yes"', info({"x": {"file_name": "good.jsonl", "ranking": "yes"}}), inspect("ds"),
     "entry 'x': 'ranking' must be true or false, got text"),
    ("formatting unknown", info({"x": {"file_name": "good.jsonl", "formatting": "xml"}}), inspect("ds"),
     "entry 'x': formatting 'xml' is not supported (alpaca, sharegpt)"),
    ("columns value a number", info({"x": {"file_name": "good.jsonl", "columns": {"prompt": 5}}}), inspect("ds"),
     "entry 'x': 'columns.prompt' must be text"),
    ("file_name with ..", info({"x": {"file_name": "../outside.jsonl"}}) | {"outside.jsonl": GOOD}, inspect("ds"),
     "entry 'x': file_name '../outside.jsonl' must be a path inside"),
    ("file_name absolute", info({"x": {"file_name": "/etc/passwd"}}), inspect("ds"),
     "entry 'x': file_name '/etc/passwd' must be a path inside"),
    ("file_name symlink out", info({"x": {"file_name": "link.jsonl"}}) | {"outside.jsonl": GOOD,
                                                                          "ds/link.jsonl": symlink_to("../outside.jsonl")},
     inspect("ds"), "entry 'x': file_name 'link.jsonl' leads outside"),
    ("file_name folder symlink out", info({"x": {"file_name": "sub"}}) | {"out/a.jsonl": GOOD, "ds/sub": symlink_to("../out")},
     inspect("ds"), "entry 'x': file_name 'sub' leads outside"),
    ("file_name an empty folder", info({"x": {"file_name": "sub"}}) | {"ds/sub": folder}, inspect("ds"),
     "entry 'x': folder {d}/ds/sub has no .json, .jsonl, .csv, .parquet, .txt files"),
    ("file_name missing", info({"x": {"file_name": "gone.jsonl"}}), inspect("ds"), "entry 'x': file {d}/ds/gone.jsonl not found"),
    ("entry name unknown", info({"x": {"file_name": "good.jsonl"}}), inspect("ds", "--dataset", "nope"),
     "{d}/ds/dataset_info.json: no entry 'nope' (entries: x)"),
    ("hub-only entries", info({"x": {"hf_hub_url": "a/b"}}), inspect("ds"), "no entry with a local file_name"),
    # -- data inspect flags ----------------------------------------------------------------------------------------------
    ("--cutoff-len 0", {"f.jsonl": GOOD}, INSPECT + ["--cutoff-len", "0"], "--cutoff-len 0: must be >= 1"),
    ("--rows -1", {"f.jsonl": GOOD}, INSPECT + ["--rows", "-1"], "--rows -1: must be >= 0"),
    ("--map without =", {"f.jsonl": GOOD}, INSPECT + ["--map", "instruction"], "--map 'instruction': expected COLUMN=ROLE"),
    ("--map unknown role", {"f.jsonl": GOOD}, INSPECT + ["--map", "instruction=wizard"], "unknown role 'wizard'"),
]


def make_files(root: Path, files: dict) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{d}", str(root)), encoding="utf-8")


def listing(root: Path) -> dict[str, int]:
    return {str(p): p.lstat().st_size for p in root.rglob("*")}


def run_case(root: Path, files: dict, argv: list[str]) -> tuple[str, str]:
    """('named' | 'traceback' | 'accepted' | 'unclear', what it printed) for one case, run in-process."""
    make_files(root, {"good.jsonl": GOOD, **files})
    before = listing(root)
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main([a.replace("{d}", str(root)) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    except BaseException:  # noqa: BLE001: any exception escaping the command is what this test counts
        return "traceback", traceback.format_exc(limit=-3)
    if not code:
        return "accepted", out.getvalue()[-300:]
    if listing(root) != before:
        return "unclear", f"wrote files: {sorted(set(listing(root)) - set(before))}"
    return "named", err.getvalue()


def test_bad_input_corpus(tmp_path):
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
    counts = {"named": 0, "traceback": 0, "accepted": 0, "unclear": 0}
    failures = []
    for i, (name, files, argv, expected) in enumerate(CASES):
        root = tmp_path / f"case{i:03d}"
        root.mkdir()
        kind, text = run_case(root, files, argv)
        expected = expected.replace("{d}", str(root))
        if kind == "named" and (expected not in text or "Traceback" in text or not text.startswith("error: ")):
            kind = "unclear"
        counts[kind] += 1
        if kind != "named":
            failures.append(f"[{kind}] {name}: expected {expected!r}\n    got: {text.strip()[:600]}")
    print(f"\nbad inputs {len(CASES)}: {counts['named']} named errors, {counts['traceback']} tracebacks, "
          f"{counts['accepted']} accepted" + (f", {counts['unclear']} unclear" if counts["unclear"] else ""))
    assert not failures, "\n".join(failures)


SUBPROCESS_CASES = ["yaml alias bomb", "learning_rate .nan", "--set datasets={a: 1}", "json nested 100000 deep",
                    "file_name symlink out", "jsonl UTF-16 with BOM", "parquet binary column", "dataset_info is a list"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_real_process_exits_2_without_traceback(tmp_path, name):
    _, files, argv, expected = next(c for c in CASES if c[0] == name)
    make_files(tmp_path, {"good.jsonl": GOOD, **files})
    res = subprocess.run([sys.executable, "-m", "studio", *[a.replace("{d}", str(tmp_path)) for a in argv]],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert expected.replace("{d}", str(tmp_path)) in res.stderr
