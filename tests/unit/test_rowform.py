"""The Data tab's format-fitting edit form (``studio.engine.data.rowform``): each format round-trips exactly (row -> form ->
row is the same dict, extra keys kept), edits land in the row's own columns/keys, and the edited row still validates."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from tests.helpers import TEST_ROOTS

from studio.engine.data import view as ds
from studio.engine.data import formats as F
from studio.engine.data.formats import DataError, FormatSpec
from studio.engine.data.rowform import form_to_row, row_to_form

ROWS = {  # (row, form kind); every row has an extra key the form does not show
    "alpaca": ({"instruction": "Add", "input": "1 2", "output": "3", "system": "Be brief.", "id": 7,
                "history": [["hi", "hello"]]}, "alpaca"),
    "alpaca_prompt_completion": ({"prompt": "Q", "completion": "A", "id": 1}, "alpaca"),
    "sharegpt": ({"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1", "weight": 0},
                                    {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}],
                  "system": "S", "tools": "[]", "source": "x"}, "chat"),
    "messages": ({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                               {"role": "assistant", "content": "A", "name": "bot"}], "meta": {"k": 1}}, "chat"),
    "pref_prompt": ({"prompt": "Q", "chosen": "good", "rejected": "bad", "score": 0.5}, "preference"),
    "pref_prompt_conv": ({"prompt": [{"role": "user", "content": "Q"}], "chosen": [{"role": "assistant", "content": "good"}],
                          "rejected": [{"role": "assistant", "content": "bad"}], "id": "a"}, "preference"),
    "pref_alpaca": ({"instruction": "Q", "input": "", "chosen": "good", "rejected": "bad", "id": 3}, "preference"),
    "pref_sharegpt": ({"conversations": [{"from": "human", "value": "Q"}], "chosen": {"from": "gpt", "value": "good"},
                       "rejected": {"from": "gpt", "value": "bad"}}, "preference"),
    "kto": ({"prompt": "Q", "completion": "A", "label": True, "id": 9}, "kto"),
    "kto_text_label": ({"prompt": "Q", "completion": "A", "label": "false"}, "kto"),
    "kto_sharegpt": ({"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}], "kto_tag": 1},
                     "chat"),
    "text": ({"text": "Plain.", "url": "u"}, "text"),
}


def spec_of(row: dict) -> FormatSpec:
    return ds.detect_any(row)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_every_format_round_trips_exactly(name):
    row, kind = ROWS[name]
    before = copy.deepcopy(row)
    form = row_to_form(row, spec_of(row))
    assert form["kind"] == kind
    assert form_to_row(form["fields"], row, spec_of(row)) == before
    assert row == before  # the original row object is not changed


def test_alpaca_edits_land_in_their_columns():
    row, _ = ROWS["alpaca"]
    fs = spec_of(row)
    fields = row_to_form(row, fs)["fields"]
    assert fields["history"].startswith("[") and fields["instruction"] == "Add"
    fields.update(instruction="Sum", input="", output="three", history="[]")  # history is read-only: ignored
    new = form_to_row(fields, row, fs)
    assert new == dict(row, instruction="Sum", input="", output="three")
    assert new["history"] == [["hi", "hello"]] and new["id"] == 7
    bare = {"instruction": "Q", "output": "A"}  # an empty form field adds no column the row did not have
    assert form_to_row(dict(row_to_form(bare, spec_of(bare))["fields"], output="B"), bare, spec_of(bare)) == \
        {"instruction": "Q", "output": "B"}


def test_sharegpt_turns_keep_keys_role_names_and_extras():
    row, _ = ROWS["sharegpt"]
    fs = spec_of(row)
    fields = row_to_form(row, fs)["fields"]
    assert fields["turns"][:2] == [["human", "Q1"], ["gpt", "A1"]] and fields["system"] == "S"
    table = pd.DataFrame(fields["turns"] + [["user", "Q3"], ["assistant", "A3"], [None, None]], columns=["role", "content"])
    table.iloc[1, 1] = "A1 better"
    new = form_to_row(dict(fields, turns=table, system=""), row, fs)
    assert new["conversations"][1] == {"from": "gpt", "value": "A1 better", "weight": 0}  # turn extras kept
    assert new["conversations"][4:] == [{"from": "human", "value": "Q3"}, {"from": "gpt", "value": "A3"}]  # generic roles
    assert new["system"] == "" and new["tools"] == "[]" and new["source"] == "x"
    ds.validate_row(new, fs)  # still valid sharegpt
    dropped = form_to_row(dict(fields, turns=fields["turns"][:2] + [["", ""]] * 2), row, fs)
    assert [t["value"] for t in dropped["conversations"]] == ["Q1", "A1"]  # emptied table rows are removed


def test_messages_turns_use_role_content_and_validate():
    row, _ = ROWS["messages"]
    fs = spec_of(row)
    fields = row_to_form(row, fs)["fields"]
    assert fields["turns"][0] == ["system", "S"] and "system" in fields  # the system column is offered (empty)
    turns = [list(t) for t in fields["turns"]] + [["user", "More?"], ["assistant", "Yes."]]
    new = form_to_row(dict(fields, turns=turns), row, fs)
    assert "system" not in new  # an empty system box does not add a column
    assert new["messages"][-2:] == [{"role": "user", "content": "More?"}, {"role": "assistant", "content": "Yes."}]
    assert new["messages"][2]["name"] == "bot" and new["meta"] == {"k": 1}
    assert ds.validate_row(new, fs)["messages"][-1]["content"] == "Yes."
    bad = form_to_row(dict(fields, turns=[["user", "Q"], ["robot", "A"]]), row, fs)
    with pytest.raises(DataError, match="unknown role 'robot'"):  # the save path's validation names the bad role
        ds.validate_row(bad, fs)


def test_preference_and_kto_fields():
    row, _ = ROWS["pref_prompt_conv"]
    fs = spec_of(row)
    fields = row_to_form(row, fs)["fields"]
    assert (fields["prompt"], fields["chosen"], fields["rejected"]) == ("Q", "good", "bad")  # one message: its text
    new = form_to_row(dict(fields, chosen="better"), row, fs)
    assert new["chosen"] == [{"role": "assistant", "content": "better"}] and new["rejected"] == row["rejected"]
    row, _ = ROWS["kto_text_label"]
    fs = spec_of(row)
    fields = row_to_form(row, fs)["fields"]
    assert fields["label"] is False
    new = form_to_row(dict(fields, label=True, completion="B"), row, fs)
    assert new == {"prompt": "Q", "completion": "B", "label": "true"}  # the label keeps its spelling
    assert F.normalize_kto_row(new, fs)[0]["label"] is True
    row, _ = ROWS["kto_sharegpt"]
    new = form_to_row(dict(row_to_form(row, spec_of(row))["fields"], label=False), row, spec_of(row))
    assert new["kto_tag"] == 0


def test_multi_message_values_are_json_and_bad_json_is_refused():
    row = {"prompt": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"},
                      {"role": "user", "content": "Q2"}], "chosen": "c", "rejected": "r"}
    fs = spec_of(row)
    fields = row_to_form(row, fs)["fields"]
    assert fields["prompt"].startswith("[")
    edited = fields["prompt"].replace("Q2", "Q3")
    assert form_to_row(dict(fields, prompt=edited), row, fs)["prompt"][2]["content"] == "Q3"
    with pytest.raises(DataError, match="'prompt' holds a conversation"):
        form_to_row(dict(fields, prompt="[{oops"), row, fs)


def test_no_form_for_unknown_or_malformed_rows():
    assert row_to_form({"a": 1}, None)["kind"] == "raw"
    row = {"prompt": [{"role": "user", "content": "Q"}], "completion": [{"role": "assistant", "content": "A"}]}
    assert row_to_form(row, spec_of(row))["kind"] == "raw"  # prompt_completion: the JSON editor
    odd = {"conversations": ["not a message"]}
    assert row_to_form(odd, F.FormatSpec("sharegpt", dict(F.SHAREGPT_COLUMNS), dict(F.SHAREGPT_TAGS)))["kind"] == "raw"


def test_data_tab_form_fills_saves_in_format_refuses_and_undoes(tmp_path, default_tokenizer_dir):
    import json

    from studio.ui.panels import row_form as dfu
    from studio.ui.tabs import data as data_tab
    from studio.ui.context import AppContext

    ctx = AppContext.create(runs_root=tmp_path / "runs", start_jobs=False, allow_paths=TEST_ROOTS)
    rows = [ROWS["sharegpt"][0], {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}]
    src = tmp_path / "chat.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    original = src.read_bytes()
    filled = dfu.fill(ctx.access, str(src), 1, "en")
    title, loaded, updates = filled[0], filled[1], dict(zip(dfu.FIELDS, filled[2:-2]))
    assert "**sharegpt** format" in title and loaded == {"spec": str(src), "row": 1, "format": "sharegpt"}
    assert updates["turns"]["visible"] and not updates["instruction"]["visible"] and filled[-1]["visible"]
    values = [u.get("value") if u.get("visible") else None for u in updates.values()]
    turns = updates["turns"]["value"]
    turns.loc[len(turns)] = ["user", "More?"]
    turns.loc[len(turns)] = ["assistant", "Sure."]
    values[dfu.FIELDS.index("turns")] = turns
    model, args = str(default_tokenizer_dir), [1, str(default_tokenizer_dir), 1024, 1, 10, "en", loaded]
    out = data_tab._on_form_save(ctx, "update", str(src), *args, *values)
    spec = out[0]
    assert "Working copy" in out[1] and "Saved version 2" in out[1] and out[6] is True
    saved = ds.open_dataset(spec).row(1)
    assert saved == {"conversations": rows[1]["conversations"] + [{"from": "human", "value": "More?"},
                                                                  {"from": "gpt", "value": "Sure."}]}
    assert json.loads(out[-1]) == saved and src.read_bytes() == original  # the editor shows it; the original untouched
    stale = data_tab._on_form_save(ctx, "update", spec, *args, *values)  # loaded still names the original file
    assert "select the row in the table again" in stale[1] and stale[6] is False
    loaded = dfu.fill(ctx.access, spec, 1, "en")[1]
    values[dfu.FIELDS.index("turns")] = [["user", "Q"], ["assistant", ""]]
    refused = data_tab._on_form_save(ctx, "update", spec, 1, model, 1024, 1, 10, "en", loaded, *values)
    assert "nothing was saved" in refused[1] and refused[6] is False and ds.open_dataset(spec).row(1) == saved
    values[dfu.FIELDS.index("turns")] = [["user", "Q"], ["assistant", "A"]]
    added = data_tab._on_form_save(ctx, "add", spec, 1, model, 1024, 1, 10, "en", loaded, *values)
    assert "Saved version 3" in added[1] and ds.open_dataset(spec).row(2)["conversations"][1] == {"from": "gpt", "value": "A"}
    data_tab._on_edit(ctx, "undo", spec, 1, "", model, 1024, 1, 10, "en")
    assert len(ds.open_dataset(spec)) == 2
    assert dfu.fill(ctx.access, str(tmp_path / "missing.jsonl"), 0, "en")[1] == {}  # nothing to show: every field hidden
    from studio.engine.data.rowform import _FIELDS_OF

    assert {f for fields in _FIELDS_OF.values() for f in fields} == set(dfu.FIELDS)  # the UI has a box for every field
