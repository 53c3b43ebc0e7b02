"""The arena in a real headless browser (issue 17, item 1): pick two models, ask blind, read both answers, write a better
answer, vote, see the models revealed, the pairs saved and the win-rate table, then queue "Train DPO on my votes".
Same set-up as ``test_ui_browser.py`` (Debian's Chromium, skipped without it)."""

from __future__ import annotations

import pytest

from tests.ui.test_arena_serve import noisy_tiny
from tests.ui.test_ui_browser import _shot, page, url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser


def _pick(page, value: str) -> None:  # noqa: F811
    box = page.locator("#arena-models input").first
    box.click()
    box.fill(value)
    box.press("Enter")


def test_blind_vote_saves_pairs_and_shows_win_rates(page, tiny_model_dir, tmp_path):  # noqa: F811
    base, tuned = noisy_tiny(tiny_model_dir, tmp_path / "b", 5), noisy_tiny(tiny_model_dir, tmp_path / "t", 6)
    page.locator("#ts-lang label").filter(has_text="English").click()
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-model textarea, #chat-model input").first.fill(str(base))
    page.get_by_text("Arena: blind votes").click()
    _pick(page, str(tuned))
    page.locator("#arena-dataset textarea, #arena-dataset input").first.fill("browser-votes")
    page.locator("#arena-prompt textarea").fill("Tell me something.")
    page.locator("#arena-ask").click()
    page.wait_for_function("() => (document.querySelector('#arena-reveal')?.innerText || '').includes('Vote:')",
                           timeout=300_000)
    reveal = page.locator("#arena-reveal").inner_text()
    assert "tuned" not in reveal and "base (" not in reveal  # blind until the vote
    answers = [page.locator(f"#arena-{s} textarea").input_value() for s in "AB"]
    assert all(a.strip() for a in answers) and answers[0] != answers[1]
    page.locator("#arena-better textarea").fill("A clear, friendly answer.")
    page.locator("#arena-vote-A").click()
    page.wait_for_function("() => (document.querySelector('#arena-reveal')?.innerText || '').includes('pair(s)')",
                           timeout=60_000)
    reveal = page.locator("#arena-reveal").inner_text()
    assert "Saved 2 pair(s)" in reveal and "t" in reveal and "base (" in reveal
    page.wait_for_function("() => (document.querySelector('#arena-table')?.innerText || '').includes('base (')",
                           timeout=30_000)
    page.locator("#arena-train").click()
    page.wait_for_function("() => (document.querySelector('#arena-train-note')?.innerText || '').includes('DPO run')",
                           timeout=60_000)
    _shot(page, "chat-arena")
