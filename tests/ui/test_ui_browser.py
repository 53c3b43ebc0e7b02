"""The studio in a real headless browser: pick a preset, start a run, watch the loss chart get points, then screenshot
every tab in English and Chinese (saved under test-artifacts/ui/ for a look).

Needs Debian's Chromium (``apt-get install chromium``) and the ``playwright`` Python package; skipped without them. Never
waits for "network idle" (a Gradio page keeps a connection open): it waits for elements.
Run: ``pytest -m browser tests/test_ui_browser.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_until

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("STUDIO_SCREENSHOTS") or ROOT / "test-artifacts" / "ui")
RUN_TIMEOUT_MS = 600_000
TABS = {"en": ("Train", "Monitor", "Data", "Export", "Chat"), "zh": ("训练", "监控", "数据", "导出", "对话")}

if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (uses the system Chromium)")


SERVER = """
import sys
from pathlib import Path
sys.path.insert(0, str(Path.cwd()))  # the checkout (the server starts there), for studio and tests.helpers
from studio.ui import app
from studio.ui.context import AppContext
from tests.helpers import TEST_ROOTS
ctx = AppContext.create(runs_root=Path(sys.argv[2]), allow_paths=TEST_ROOTS)
ctx.presets_root = Path(sys.argv[3])
demo = app.build_app(ctx)
demo.queue()
demo.launch(server_port=int(sys.argv[1]), prevent_thread_lock=True, **app.launch_options())
print("studio up", flush=True)
demo.block_thread()
"""


@pytest.fixture(scope="module")
def url(tmp_path_factory, tiny_model_dir):
    """The studio in its own process (as users run it), with a tiny preset, on a free port."""
    tmp = tmp_path_factory.mktemp("ui_browser")
    data = tmp / "alpaca.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Say {i}.", "input": "", "output": f"{i}."}) + "\n" for i in range(16)))
    presets = tmp / "presets"
    presets.mkdir()
    (presets / "tiny_browser.yaml").write_text(
        f"# Tiny browser-test preset.\nmodel:\n  name_or_path: {tiny_model_dir}\ndata:\n  datasets: [{data}]\n"
        "training:\n  max_steps: 3\n  per_device_train_batch_size: 4\n  cutoff_len: 64\noutput:\n  run_name: browser\n")
    (tmp / "serve.py").write_text(SERVER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, str(tmp / "serve.py"), str(port), str(tmp / "runs"), str(presets)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def up() -> bool:
            assert proc.poll() is None, (tmp / "server.log").read_text()
            return "studio up" in (tmp / "server.log").read_text()

        wait_until(up, 300, "the test studio to start", interval=0.2)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def page(url):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                    "--disable-background-networking", "--disable-component-update", "--no-first-run"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(120_000)  # 2 shared cores, a trainer and the browser: a click can take a while
        pg.goto(url)
        pg.wait_for_selector("#train-preset", timeout=120_000)
        yield pg
        browser.close()


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True, animations="disabled", timeout=120_000)


def test_preset_start_and_live_chart(page):
    page.locator("#train-preset input").click()
    page.get_by_role("option", name="tiny_browser").click()
    page.wait_for_function("() => (document.querySelector('#cfg-model-name_or_path textarea, #cfg-model-name_or_path input')"
                           "?.value || '').includes('tiny')", timeout=60_000)
    page.locator("#train-start").click()
    page.wait_for_selector("#train-message strong", timeout=60_000)
    assert "browser" in page.locator("#train-message").inner_text()
    page.get_by_role("tab", name="Monitor").click()
    # a line mark with a drawn path = the loss chart has points
    page.wait_for_function("() => [...document.querySelectorAll('#chart-loss g.mark-line path')]"
                           ".some(p => (p.getAttribute('d') || '').length > 10)", timeout=RUN_TIMEOUT_MS)
    _shot(page, "monitor-live")
    page.get_by_role("tab", name="Train").click()
    page.wait_for_selector("#train-progress [data-state='finished']", timeout=RUN_TIMEOUT_MS)
    _shot(page, "train-finished")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_tab_in_both_languages(page, lang):
    page.locator("#ts-lang label").filter(has_text="中文" if lang == "zh" else "English").click()
    first = TABS[lang][0]
    page.get_by_role("tab", name=first).wait_for(timeout=30_000)
    for name, label in zip(TABS["en"], TABS[lang]):
        page.get_by_role("tab", name=label).click()
        page.wait_for_timeout(800)  # let the tab's plots lay out
        _shot(page, f"{lang}-{name.lower()}")
    page.get_by_role("tab", name=first).click()
    expected = "开始训练" if lang == "zh" else "Start"
    assert page.locator("#train-start").inner_text().strip() == expected


def _english(page) -> None:
    """Back to English (the language test leaves the page in Chinese)."""
    page.locator("#ts-lang label").filter(has_text="English").click()
    page.get_by_role("tab", name="Train").wait_for(timeout=30_000)


def test_self_cognition_card_previews_the_filled_rows(page):
    _english(page)
    page.get_by_role("tab", name="Train").click()
    name = page.locator("#ident-name-en textarea, #ident-name-en input").first
    name.fill("Orion")
    page.locator("#ident-preview").click()
    page.wait_for_selector("#ident-rows table", timeout=60_000)
    page.wait_for_function("() => (document.querySelector('#ident-rows')?.innerText || '').includes('Orion')", timeout=60_000)
    text = page.locator("#ident-rows").inner_text()
    assert "小新" in text and "{{" not in text  # Chinese rows keep the Chinese name
    assert "212" in page.locator("#ident-message").inner_text()


def test_data_form_edits_a_conversation_in_its_format(page, tmp_path, tiny_model_dir):
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}],
                                "system": "S", "id": 7}) + "\n", encoding="utf-8")
    _english(page)
    page.get_by_role("tab", name="Data").click()
    page.locator("#data-spec textarea, #data-spec input").first.fill(str(data))
    page.locator("#data-load").click()
    page.wait_for_function("() => (document.querySelector('#data-rows')?.innerText || '').includes('Q1')", timeout=60_000)
    page.get_by_label("Tokenizer / chat template of model").fill(str(tiny_model_dir))
    page.locator("#data-edit").get_by_text("Edit rows").click()
    page.locator("#data-rows [data-testid='cell-0-1']").first.click()  # Gradio's table: cells are found by test id
    page.wait_for_function("() => (document.querySelector('#data-form-title')?.innerText || '').includes('sharegpt')",
                           timeout=60_000)
    assert page.locator("#data-form-turns").is_visible() and not page.locator("#data-form-instruction").is_visible()
    page.locator("#data-form-system textarea").fill("Be kind.")
    page.locator("#data-form-save").click()
    page.wait_for_function("() => (document.querySelector('#data-edit-msg')?.innerText || '').includes('Saved version 2')",
                           timeout=60_000)
    page.wait_for_function("() => (document.querySelector('#data-editor')?.innerText || '').includes('Be kind.')",
                           timeout=30_000)
    assert json.loads(data.read_text())["system"] == "S"  # the original is never written
    copy = page.locator("#data-edit-msg").inner_text().split("Working copy ")[1].split()[0]
    from studio.engine.data.view import open_dataset

    assert open_dataset(copy).row(0) == {"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}],
                                         "system": "Be kind.", "id": 7}  # same format, the other keys kept
    _shot(page, "data-form")


def test_chat_streams_answers_from_both_sides(page, tiny_model_dir):
    _english(page)
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-model textarea, #chat-model input").first.fill(str(tiny_model_dir))
    page.locator("#chat-prompt textarea").fill("Hello there")
    page.locator("#chat-send").click()
    # the user's message shows, then the "Loading…" placeholder is replaced by the model's answer (no error bubble)
    page.wait_for_function("() => (document.querySelector('#chat-base')?.innerText || '').includes('Hello there')",
                           timeout=120_000)
    page.wait_for_function("() => !(document.querySelector('#chat-base')?.innerText || '').includes('Loading')",
                           timeout=300_000)
    assert "Error" not in page.locator("#chat-base").inner_text()
    assert "pick a run" in page.locator("#chat-tuned").inner_text()  # no adapter chosen: the tuned side says so
