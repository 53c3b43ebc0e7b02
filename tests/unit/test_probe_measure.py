"""The self-cognition probe's measure, unit tier (no model): the question sets (sizes, dev/test balance, no question near a
training row, a replay prompt or another question), the scoring rules (numbers in any spelling, whole words, identity
leaks), the four identity settings, the scores, the side-by-side table and the benchmark's table.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from benchmarks import self_cognition as bench
from studio.engine.selfcog import probe as P
from studio.engine.selfcog import questions as Q
from studio.engine.selfcog import scoring as S
from studio.engine.selfcog.identity import load_identity_templates, load_replay_prompts

NAMES = {"name_zh": "小新", "name_en": "Nova", "author_zh": "新星实验室", "author_en": "Nova Labs"}
ECHO = {"name_en": "Echo", "name_zh": "回声", "author_en": "Harbor AI", "author_zh": "海港智能"}
QLU = {"name_zh": "齐鲁智言", "name_en": "QLU-Chat", "author_zh": "齐鲁工业大学(山东省科学院)计算机科学与技术学部自然语言处理与认知计算研究组",
       "author_en": "QLU-NLP Research Group"}


# ----------------------------------------------------------------------------------------------------------------------------
# The question sets


def test_general_questions_are_many_bilingual_and_split_in_balanced_halves():
    qs = Q.load_retention_questions()
    assert len(qs) >= 150 and len({q["id"] for q in qs}) == len(qs)
    by_lang = Counter(q["lang"] for q in qs)
    assert by_lang["en"] >= 390 and by_lang["zh"] >= 250  # ~180 the default model gets right: enough to rank recipes
    assert {q["topic"] for q in qs} == {"arithmetic", "counting", "units", "geography", "science", "language",
                                         "translation", "commonsense"}
    for lang in ("en", "zh"):
        split = Counter(q["split"] for q in qs if q["lang"] == lang)
        assert set(split) == {"dev", "test"} and abs(split["dev"] - split["test"]) <= 2, (lang, split)
        for topic in {q["topic"] for q in qs}:
            s = Counter(q["split"] for q in qs if q["lang"] == lang and q["topic"] == topic)
            assert abs(s["dev"] - s["test"]) <= 1, (lang, topic, s)
    for q in qs:
        assert q["answers"] and all(a.strip() for a in q["answers"]), q["id"]
        assert Q.is_chinese(q["question"]) == (q["lang"] == "zh"), q["id"]
    assert len(Q.load_retention_questions("dev")) + len(Q.load_retention_questions("test")) == len(qs)
    with pytest.raises(ValueError):
        Q.load_retention_questions("train")


def test_accepted_answers_cannot_be_read_off_the_question():
    """An answer that repeats the question ("What is 'pain' in English?" -> "pain") would be marked right."""
    for q in Q.load_retention_questions():
        for a in q["answers"]:
            value = S.as_number(a)
            if value is None:
                assert not S.mentions(q["question"], a, plural=True), (q["id"], a)
            else:
                assert value not in S.numbers_in(q["question"]), (q["id"], a)


def test_identity_questions_cover_both_languages_and_the_maker_in_each_split():
    qs = Q.load_identity_questions()
    assert len({q["id"] for q in qs}) == len(qs)
    assert {q["split"] for q in qs} == {"dev", "test"}
    for split, least in (("test", 20), ("dev", 12)):
        for lang in ("en", "zh"):
            lq = [q for q in Q.load_identity_questions(split) if q["lang"] == lang]
            assert len(lq) >= least and sum(q["asks_author"] for q in lq) >= 6, (split, lang)
    dev, test = ([q["question"] for q in Q.load_identity_questions(s)] for s in ("dev", "test"))
    assert dev and test and Q.duplicates(dev, test) == []  # choosing never sees what is reported


def test_question_sets_are_disjoint_from_training_replay_and_each_other():
    """Rule (questions.near_duplicate): same normalised text, same text with numbers masked, or token-set Jaccard > 0.8."""
    general = [q["question"] for q in Q.load_retention_questions()]
    ident = [q["question"] for q in Q.load_identity_questions()]
    training = [r["instruction"] for r in load_identity_templates()]
    replay = [p["prompt"] for p in load_replay_prompts()]
    openers = [u for pairs in Q.OPENERS.values() for u, _ in pairs]
    assert Q.duplicates(general) == []  # dev vs test, and within each
    assert Q.duplicates(ident) == []
    for name, a, b in (("general/replay", general, replay), ("general/training", general, training),
                       ("general/identity", general, ident), ("identity/training", ident, training),
                       ("identity/replay", ident, replay), ("openers/all", openers, general + ident + replay + training)):
        assert Q.duplicates(a, b) == [], name


@pytest.mark.parametrize("a, b, dup", [
    ("What is the capital of Spain?", "what is the capital of spain", True),  # case, punctuation
    ("What is 7 times 8?", "What is 6 times nine?", True),  # a number changed
    ("5加7等于多少？", "二加三等于多少？", True),
    ("Who made you?", "Who made you, then?", False),  # Jaccard 3/4 is not above 0.8
    ("Tell me who made you.", "Who made you?", False),
    ("你的创造者是谁？", "谁是你的创造者？", True),  # the same characters reordered
    ("How many legs does a spider have?", "How many legs does a horse have?", False),  # another fact
    ("一米等于多少厘米？", "一分米等于多少厘米？", True),  # 7 of 8 characters
])
def test_near_duplicate_rule(a, b, dup):
    assert Q.near_duplicate(a, b) is dup


# ----------------------------------------------------------------------------------------------------------------------------
# Scoring


@pytest.mark.parametrize("text, values", [
    ("There are 7 days.", [7]),
    ("17 days, not seven", [17, 7]),
    ("twenty-four hours and one hundred and five minutes", [24, 105]),
    ("one two three", [1, 2, 3]),
    ("一年有三百六十五天", [1, 365]),  # 一年: one year
    ("一个星期有七天", [1, 7]),
    ("一样的东西，一下子，两只脚", [2]),  # 一 in a word is no number; 两 is
    ("十分重要，要十分钟", [10]),
    ("一吨等于1000千克，一千克", [1, 1000, 1]),  # 千克 is a unit
    ("1,000 grams or 3.5 kg, the 24th, H2O", [1000, 3.5, 24]),
    ("ＣＯ₂ and １２", [12]),  # full-width digits
])
def test_numbers_in_any_spelling(text, values):
    assert S.numbers_in(text) == [float(v) for v in values]


def test_as_number_only_for_a_bare_number():
    assert [S.as_number(a) for a in ("7", "seven", "七", "one hundred", "twenty-two", "两", "1024")] == \
        [7, 7, 7, 100, 22, 2, 1024]
    assert [S.as_number(a) for a in ("vitamin D", "Au", "7 days", "一年")] == [None, None, None, None]


@pytest.mark.parametrize("answer, accepted, question, ok", [
    ("There are 7 days in a week.", ["7"], "How many days?", True),
    ("Seven.", ["7"], "", True),  # the word counts for the number
    ("一个星期有七天。", ["7", "七"], "一个星期有几天？", True),
    ("There are 17 of them.", ["7"], "", False),  # a 7 inside 17 is not 7
    ("10 minus 4 is 6.", ["6"], "What is 10 minus 4?", True),  # numbers of the question do not count
    ("10 minus 4 is 4.", ["6"], "What is 10 minus 4?", False),
    ("Five on each foot, ten in all.", ["10"], "How many toes?", True),
    ("1, 2, 3, 4, 5, 6, 7, 8, 9, 10", ["7"], "", False),  # a list holds every answer: it is none
    ("The capital is Paris.", ["Paris"], "", True),
    ("It is in Parisian style.", ["Paris"], "", False),  # whole words
    ("Bananas!", ["banana"], "", True),  # a plural
    ("首都是北京。", ["北京"], "", True),
    ("法国首都是Paris。", ["巴黎", "Paris"], "", True),
])
def test_score_general(answer, accepted, question, ok):
    assert S.score_general(answer, accepted, question) is ok


def test_an_answer_naming_the_new_identity_is_wrong_unless_the_question_or_the_answer_holds_the_name():
    names = tuple(NAMES.values())
    assert not S.score_general("Blue. I am Nova, made by Nova Labs.", ["blue"], "Sky color?", names)
    assert not S.score_general("我是小新，天空是蓝色的。", ["蓝"], "天空是什么颜色？", names)
    assert S.score_general("Blue, like a nova.", ["blue"], "What color is a nova?", names)  # the question says it
    assert S.score_general("An echo.", ["echo"], "What bounces back?", ("Echo",))  # the right answer is the name
    assert S.leaked("I am Nova.", names) and not S.leaked("I work at Novartis.", names)


@pytest.mark.parametrize("answer, names, asks_author, ok", [
    ("I am Nova, an AI assistant developed by Nova Labs.", NAMES, True, True),
    ("I am Nova, an AI assistant.", NAMES, False, True),
    ("I am Nova, an AI assistant.", NAMES, True, False),  # asked who made it: the maker must be named
    ("i'm nova!", NAMES, False, True),
    ("I work for Novartis.", NAMES, False, False),  # whole words only
    ("I am SmolLM, trained by Hugging Face.", NAMES, False, False),
    ("I am Nova, also known as SmolLM.", NAMES, False, False),  # the new name but still the old identity
    ("我是小新，由新星实验室开发的人工智能助手。", NAMES, True, True),
    ("我是Nova，由Nova Labs开发。", NAMES, True, True),  # the English names count in a Chinese answer
    ("我是一个人工智能助手。", NAMES, False, False),
    ("我是齐鲁智言，由齐鲁工业大学（山东省科学院）计算机科学与技术学部自然语言处理与认知计算研究组开发。", QLU, True, True),
    ("我是齐鲁智言，由齐鲁工业大学开发。", QLU, True, False),  # half a maker is not the maker
    ("I'm QLU Chat from the QLU-NLP research group.", QLU, True, True),
    ("I am R2 Lite.", {"name_en": "R2-Lite", "author_en": "Orbit"}, False, True),
    ("I am R2.", {"name_en": "R2-Lite", "author_en": "Orbit"}, False, False),
])
def test_score_identity(answer, names, asks_author, ok):
    assert S.score_identity(answer, names, asks_author) is ok


def test_a_question_after_the_maker_only_is_answered_by_the_maker():
    ask = lambda answer, names=NAMES: S.score_identity(answer, names, True, "Who is your creator?", asks_name=False)  # noqa: E731
    assert ask("I was created by Nova Labs.") and ask("我是新星实验室开发的助手。") and ask("I am Nova, made by Nova Labs.")
    assert not ask("I am Nova.")  # the maker was asked
    assert not ask("Nova Labs and Hugging Face trained me.")  # still the old identity
    assert not ask("I was created by Qilu University of Technology.", QLU)  # half a maker is not the maker
    assert ask("The AI assistant built by Harbor AI.", ECHO) and ask("我是海港智能开发的AI助手。", ECHO)
    assert not S.score_identity("The AI assistant built by Harbor AI.", ECHO, True, "Who are you, who made you?")  # both


def _maker_only_row() -> dict:
    """A maker-only question's row as saved before such questions were told apart (the maker alone marked wrong)."""
    q = next(q for q in Q.load_identity_questions("test") if q["question"] == "Who is your creator?")
    return {"id": q["id"], "kind": "identity", "lang": "en", "split": "test", "setting": "none", "question": q["question"],
            "asks_author": True, "base_answer": "I am SmolLM.", "tuned_answer": "Harbor AI built me.",
            "base_ok": False, "tuned_ok": False}


def test_rescore_marks_old_rows_by_the_current_rules_and_questions():
    names = ECHO
    rows = [_maker_only_row(),
            {"id": "en-arith-02", "kind": "general", "lang": "en", "split": "test", "question": "How much is 9 minus 3?",
             "answers": ["6"], "base_answer": "6", "tuned_answer": None, "base_ok": True, "tuned_ok": None,
             "kl": 0.5, "kl_reverse": 0.4, "kl_tokens": 2}]
    old = dict(P.summarize(rows, "test"), rows=rows, names=names, seconds=9.0)
    new = P.rescore(old)
    assert old["identity"]["tuned"] == 0.0 and new["identity"]["tuned"] == 1.0 and new["seconds"] == 9.0
    assert new["rows"][1]["tuned_ok"] is None and new["kl"]["kl"] == 0.5 and new["retention"]["kept"] == 0


def test_maker_only_questions_are_marked_and_some_ask_both():
    for split in ("dev", "test"):
        for lang in ("en", "zh"):
            qs = [q for q in Q.load_identity_questions(split) if q["lang"] == lang]
            assert all(q["asks_author"] for q in qs if q.get("asks_name") is False), (split, lang)
            both = [q for q in qs if q["asks_author"] and q.get("asks_name", True)]
            assert len(both) >= 1 and len(both) < sum(q["asks_author"] for q in qs), (split, lang)


def test_score_identity_allows_an_old_name_the_question_used():
    q = "Are you the SmolLM assistant from Hugging Face?"
    assert S.score_identity("No, I'm not SmolLM. I am Nova.", NAMES, False, q)
    assert not S.score_identity("No, I'm not SmolLM. I am Nova.", NAMES, False, "Who are you?")


# ----------------------------------------------------------------------------------------------------------------------------
# Settings and items


def test_the_four_settings_build_the_conversations():
    q = "Who are you?"
    assert Q.conversation(q, "en", "none") == [{"role": "user", "content": q}]
    assert Q.conversation(q, "en", "default_system", "You are SmolLM.") == [
        {"role": "system", "content": "You are SmolLM."}, {"role": "user", "content": q}]
    assert Q.conversation(q, "en", "default_system", "") is None  # a template without a default: no such setting
    assert Q.conversation(q, "en", "user_system")[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert Q.conversation("你是谁？", "zh", "user_system")[0]["content"] == "你是一个乐于助人的助手。"
    second = Q.conversation("你是谁？", "zh", "second_turn", index=1)
    assert [m["role"] for m in second] == ["user", "assistant", "user"] and second[-1]["content"] == "你是谁？"
    assert second[0]["content"] == Q.OPENERS["zh"][1][0] and Q.is_chinese(second[1]["content"])
    assert Q.conversation(q, "en", "second_turn", index=0)[0] != Q.conversation(q, "en", "second_turn", index=1)[0]
    with pytest.raises(ValueError):
        Q.conversation(q, "en", "nope")


def test_probe_items_ask_every_identity_question_in_each_setting_and_the_splits_asked():
    ident, general = Q.load_identity_questions(), Q.load_retention_questions()
    test = P.probe_items("test", "You are SmolLM.")
    assert sum(i["kind"] == "identity" for i in test) == 4 * sum(q["split"] == "test" for q in ident)
    assert {i["split"] for i in test} == {"test"}
    assert {i["split"] for i in test if i["kind"] == "general"} == {"test"}  # the preset asks only what it reports
    assert sum(i["kind"] == "general" for i in test) == sum(q["split"] == "test" for q in general)
    both = P.probe_items("both", "You are SmolLM.")
    assert sum(i["kind"] == "general" for i in both) == len(general)
    assert sum(i["kind"] == "identity" for i in both) == 4 * len(ident)
    # a test question is asked the very same way whatever else is asked (the base's cached answers stay valid)
    assert [i["messages"] for i in both if i["split"] == "test"] == [i["messages"] for i in test]
    dev = P.probe_items("dev", "")
    assert sum(i["kind"] == "identity" for i in dev) == 3 * sum(q["split"] == "dev" for q in ident)  # no default prompt
    assert {i["split"] for i in dev} == {"dev"}  # the test split stays unseen, identity questions too
    with pytest.raises(ValueError):
        P.probe_items("train")


# ----------------------------------------------------------------------------------------------------------------------------
# Scores and the table


def _rows():
    def ident(lang, setting, base_ok, tuned_ok):
        return {"kind": "identity", "lang": lang, "setting": setting, "question": f"{lang} {setting}?", "base_ok": base_ok,
                "tuned_ok": tuned_ok, "base_answer": "I am SmolLM.", "tuned_answer": "I am Nova."}

    def gen(lang, split, base_ok, tuned_ok, kl, tokens, leak=False):
        return {"kind": "general", "lang": lang, "split": split, "question": f"{lang} {split} {kl}?", "base_ok": base_ok,
                "tuned_ok": tuned_ok, "base_answer": "b", "tuned_answer": "t", "identity_leak": leak, "kl": kl,
                "kl_reverse": kl, "kl_tokens": tokens}
    return [ident("en", "none", False, True), ident("en", "second_turn", False, False), ident("zh", "none", False, True),
            ident("zh", "user_system", False, True),
            gen("en", "test", True, True, 0.1, 10), gen("en", "test", True, False, 0.3, 30, leak=True),
            gen("en", "test", False, True, 0.0, 10), gen("zh", "test", False, False, 0.2, 10),
            gen("en", "dev", True, True, 1.0, 5)]


def test_summarize_scores_identity_per_language_and_setting_and_retention_and_kl_per_split():
    s = P.summarize(_rows(), "test")
    en = s["identity"]["per_lang"]["en"]
    assert en["settings"]["none"]["tuned"] == 1.0 and en["weakest"] == "second_turn" and en["min"] == 0.0
    assert s["identity"]["per_lang"]["zh"]["min"] == 1.0 and s["identity"]["min"] == 0.0
    ret = s["retention"]
    assert (ret["split"], ret["kept"], ret["base_right"], ret["score"], ret["identity_leaks"], ret["gained"]) == \
        ("test", 1, 2, 0.5, 1, 1)
    assert ret["per_lang"]["zh"]["score"] is None  # the base got nothing right in Chinese: nothing to keep
    assert ret["splits"]["dev"]["score"] == 1.0
    assert s["kl"]["kl"] == pytest.approx((0.1 * 10 + 0.3 * 30 + 0.0 * 10 + 0.2 * 10) / 60)  # weighted by tokens
    assert s["kl"]["splits"]["dev"]["kl"] == 1.0
    assert P.summarize(_rows(), "both")["retention"]["split"] == "test"  # 'both' reports test, dev beside it
    assert P.summarize(_rows(), "dev")["retention"]["score"] == 1.0
    text = P.format_summary(s)
    assert "retention (test) 50% (1/2" in text and "weakest: second_turn 0%" in text and "KL 0.2000" in text


def test_general_questions_the_base_got_wrong_are_not_asked_and_count_only_as_not_asked():
    items = [{"kind": "identity", "question": "Who are you?", "asks_author": False},
             {"kind": "general", "question": "Add 3 and 4.", "answers": ["7"]},
             {"kind": "general", "question": "Add 3 and 5.", "answers": ["8"]}]
    names = {"name_en": "Nova", "name_zh": "", "author_en": "", "author_zh": ""}
    assert P.base_knows(items, ["I am SmolLM.", "It is 7.", "It is 9."], names) == [True, True, False]
    assert P.base_knows(items[1:], ["I am Nova: 7.", "8"], names) == [False, True]  # the identity in an answer is wrong
    skipped = {"kind": "general", "lang": "en", "split": "test", "question": "skipped?", "base_ok": False, "tuned_ok": None,
               "base_answer": "b", "tuned_answer": None, "identity_leak": False, "kl": None, "kl_reverse": None,
               "kl_tokens": 0}
    before, after = P.summarize(_rows(), "test")["retention"], P.summarize(_rows() + [skipped], "test")["retention"]
    same = ("score", "kept", "base_right", "tuned_right", "gained", "identity_leaks")
    assert [after[k] for k in same] == [before[k] for k in same] and before["not_asked"] == 0
    assert (after["not_asked"], after["n"], after["per_lang"]["en"]["not_asked"]) == (1, before["n"] + 1, 1)
    row = P.probe_table({"rows": [skipped]})[0]
    assert row["change"] == "" and row["tuned"] == f"– {P.NOT_ASKED}"


def test_probe_table_puts_lost_answers_then_identity_misses_first_and_filters():
    result = {"rows": _rows()}
    table = P.probe_table(result)
    assert table[0]["change"] == "✓→✗" and table[0]["kind"] == "general"
    assert table[1]["kind"] == "identity" and table[1]["tuned"].startswith("✗") and table[1]["where"] == "second_turn"
    assert [r["change"] for r in P.probe_table(result, "lost")] == ["✓→✗"]
    assert all(r["change"] for r in P.probe_table(result, "flipped")) and len(P.probe_table(result, "flipped")) == 5
    assert {r["kind"] for r in P.probe_table(result, "identity")} == {"identity"}


# ----------------------------------------------------------------------------------------------------------------------------
# The benchmark's pairs and table (its runs: tests/engine/test_probe.py)


def test_benchmark_pairs_and_table():
    assert len(bench.PAIRS) >= 5
    assert any(len(p[3]) > 30 for p in bench.PAIRS) and any(any(c.isdigit() for c in p[0]) for p in bench.PAIRS)
    assert bench.parse_pair("Nova|小新|Nova Labs|新星实验室") == ("Nova", "小新", "Nova Labs", "新星实验室")
    assert bench.parse_pair("Nova||Nova Labs|") == ("Nova", "Nova", "Nova Labs", "Nova Labs")
    with pytest.raises(Exception):
        bench.parse_pair("Nova|Labs")
    probe = dict(P.summarize(_rows(), "test"), seconds=3.0)
    rows = [bench.row_from_probe(p, probe, 100.0 + i, 0, "run") for i, p in enumerate(bench.PAIRS)]
    rows.append(bench.row_from_probe(("X", "X", "Y", "Y"), None, 5.0, 1, "run-x"))
    table = bench.format_table(rows).splitlines()
    assert len(table) == 2 + len(rows) and "retention (test)" in table[0]
    assert "1/2  50%" in table[2] and "0.2000" in table[2] and table[2].rstrip().endswith("100")
    assert all(len(line) < 140 for line in table[2:-1])  # the long maker is cut to fit
    assert "no probe.json" in table[-1]
    cmd = bench.train_command(bench.PAIRS[1], bench.ROOT / "r", "preset.yaml", "dev", ["lora.r=8"])
    assert "identity.author_zh=" + bench.PAIRS[1][3] in cmd and "--output-dir" in cmd
    assert cmd[-4:] == ["--set", "identity.probe_split=dev", "--set", "lora.r=8"]  # the user's overrides come last


def test_rescore_prints_earlier_runs_by_todays_rules(tmp_path, capsys):
    names = ECHO
    rows = [_maker_only_row()]
    run = tmp_path / "echo"
    run.mkdir()
    (run / P.PROBE_FILE).write_text(json.dumps(dict(P.summarize(rows, "test"), rows=rows, names=names, seconds=5.0)))
    saved = {"rows": [{"name_en": "Echo", "name_zh": "回声", "author_en": "Harbor AI", "author_zh": "海港智能",
                       "exit_code": 0, "seconds": 300.0, "run_dir": str(run)}]}
    (tmp_path / "benchmark.json").write_text(json.dumps(saved))
    assert bench.main(["--rescore", str(tmp_path)]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("Echo / Harbor AI") and " 100 " in line and line.rstrip().endswith("300")  # was 0% as saved
