"""The Data tab's format-fitting row form: selecting a row shows the fields of its format (alpaca: system, instruction,
input, output; a conversation: system + an editable table of turns; preference: prompt, chosen, rejected; KTO: prompt,
completion, label) and hides the rest; rows of any other format are edited in the raw JSON editor only.

The conversion row <-> fields is ``studio.engine.data.rowform`` (the row keeps its own format, column names and extra keys);
the Data tab saves the resulting row through its usual path (validated, atomic, versioned, undo).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from studio.ui.i18n import Texts, t

TURN_COLUMNS = ["role", "content"]
FIELDS = ("system", "instruction", "input", "output", "history", "turns", "prompt", "chosen", "rejected", "completion",
          "label", "text")


@dataclass
class FormRefs:
    title: gr.Markdown
    loaded: gr.State  # {"spec", "row", "format"} the form was filled from: a save checks it still matches
    fields: dict  # field name -> component, in FIELDS order
    save: gr.Button
    add: gr.Button

    @property
    def components(self) -> list:
        return [self.fields[name] for name in FIELDS]


def build(tx: Texts) -> FormRefs:
    title = gr.Markdown(t("data.form_empty", tx.lang), elem_id="data-form-title")  # per-row text: not relabelled
    loaded = gr.State({})
    f = {}
    hidden = dict(visible=False)
    f["system"] = tx.make(gr.Textbox, label="data.f_system", lines=1, elem_id="data-form-system", **hidden)
    with gr.Row():
        f["instruction"] = tx.make(gr.Textbox, label="data.f_instruction", lines=3, elem_id="data-form-instruction", **hidden)
        f["input"] = tx.make(gr.Textbox, label="data.f_input", lines=3, elem_id="data-form-input", **hidden)
    f["output"] = tx.make(gr.Textbox, label="data.f_output", lines=4, elem_id="data-form-output", **hidden)
    f["history"] = tx.make(gr.Code, label="data.f_history", language="json", interactive=False, **hidden)
    f["turns"] = tx.make(gr.Dataframe, label="data.f_turns", headers=TURN_COLUMNS, column_count=2,
                         datatype=["str", "str"], interactive=True, wrap=True, elem_id="data-form-turns",
                         value=pd.DataFrame(columns=TURN_COLUMNS), **hidden)
    f["prompt"] = tx.make(gr.Textbox, label="data.f_prompt", lines=3, elem_id="data-form-prompt", **hidden)
    with gr.Row():
        f["chosen"] = tx.make(gr.Textbox, label="data.f_chosen", lines=4, elem_id="data-form-chosen", **hidden)
        f["rejected"] = tx.make(gr.Textbox, label="data.f_rejected", lines=4, elem_id="data-form-rejected", **hidden)
    f["completion"] = tx.make(gr.Textbox, label="data.f_completion", lines=4, elem_id="data-form-completion", **hidden)
    f["label"] = tx.make(gr.Checkbox, label="data.f_label", elem_id="data-form-label", **hidden)
    f["text"] = tx.make(gr.Textbox, label="data.f_text", lines=6, elem_id="data-form-text", **hidden)
    with gr.Row():
        save = tx.make(gr.Button, value="data.form_save", variant="primary", elem_id="data-form-save", **hidden)
        add = tx.make(gr.Button, value="data.form_add", elem_id="data-form-add", **hidden)
    return FormRefs(title, loaded, f, save, add)


def fill(access, spec: str, row, lang: str) -> list:
    """[title, loaded, *one update per field, save, add]: the selected row's form (fields of other formats hidden)."""
    from studio.engine.data import view as ds
    from studio.engine.data.formats import DataError
    from studio.engine.data.rowform import row_to_form

    spec = (spec or "").strip()
    try:
        view = ds.open_dataset(spec, access=access)
        index = int(row or 0)
        raw = view.row(index)
        try:
            fs = view.format_of(index)
        except DataError:
            fs = None
        form = row_to_form(raw, fs)
    except (DataError, OSError, ValueError, TypeError):
        return [t("data.form_empty", lang), {}] + [gr.update(visible=False)] * (len(FIELDS) + 2)
    fields = form["fields"]
    updates = [_field_update(name, fields) for name in FIELDS]
    if form["kind"] == "raw":
        title = t("data.form_raw", lang, row=index, fmt=view.format)
    else:
        title = t("data.form_title", lang, row=index, fmt=fs.format)
    shown = gr.update(visible=form["kind"] != "raw")
    loaded = {"spec": spec, "row": index, "format": fs.format if fs else ""}
    return [title, loaded, *updates, shown, shown]


def _field_update(name: str, fields: dict):
    if name not in fields:
        return gr.update(visible=False)
    value = fields[name]
    if name == "turns":
        value = pd.DataFrame(value, columns=TURN_COLUMNS)
    return gr.update(value=value, visible=True)


def row_from_form(access, spec: str, row, loaded: dict, values: list, lang: str) -> dict:
    """The selected row with the form's edits, in the dataset's own format (saved in place, or added as a new row)."""
    from studio.engine.data import view as ds
    from studio.engine.data.formats import DataError
    from studio.engine.data.rowform import form_to_row, row_to_form

    spec, index = (spec or "").strip(), int(row or 0)
    view = ds.open_dataset(spec, access=access)
    fs = view.format_of(index)
    if (loaded or {}).get("spec") != spec or loaded.get("row") != index or loaded.get("format") != fs.format:
        raise DataError(t("data.form_stale", lang, row=index))  # the form shows another row: never save it here
    base = view.row(index)
    shown = row_to_form(base, fs)["fields"]
    given = dict(zip(FIELDS, values))
    return form_to_row({name: given[name] for name in shown}, base, fs)
