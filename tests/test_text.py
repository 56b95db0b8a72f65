"""Text normalization and splitting: nothing dropped, natural cut points, short first piece."""

from __future__ import annotations

import re

from wyoming_kokoro_gguf.synth.text import MAX_PIECE_CHARS, normalize, sentences, split_text


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def test_empty_and_blank_give_nothing() -> None:
    assert split_text("") == []
    assert split_text("   \n\t  ") == []


def test_normalize_collapses_whitespace_and_quotes() -> None:
    assert normalize("  It\u2019s\tfine\n\n now \u00a0") == "It's fine now"
    assert normalize("a\x00b") == "a b"


def test_sentences_keep_punctuation_and_closing_quotes() -> None:
    assert sentences('He said "Yes." Then he left! Did he? Yes') == [
        'He said "Yes."',
        "Then he left!",
        "Did he?",
        "Yes",
    ]


def test_abbreviations_and_lowercase_continuations_do_not_end_sentences() -> None:
    assert sentences("Dr. Smith came at 5 p.m. today. Then he left.") == [
        "Dr. Smith came at 5 p.m. today.",
        "Then he left.",
    ]


def test_cjk_sentence_marks() -> None:
    assert split_text("日本語です。はい、そうです。") == ["日本語です。", "はい、そうです。"]


def test_first_piece_is_short_for_early_audio() -> None:
    text = (
        "When the sun rose over the quiet hills, the birds began to sing, "
        "and the village slowly woke up. Then it rained."
    )
    pieces = split_text(text)
    assert pieces[0] == "When the sun rose over the quiet hills,"
    assert pieces[-1] == "Then it rained."
    assert _words(" ".join(pieces)) == _words(text)


def test_short_first_sentence_is_not_cut() -> None:
    assert split_text("Hello, world. Bye.") == ["Hello, world.", "Bye."]


def test_long_text_never_truncated_and_pieces_bounded() -> None:
    sentence = "This clause is fairly long, and it goes on; it has several parts: one, two, three. "
    text = sentence * 60 + "A sentence without any punctuation " * 20
    pieces = split_text(text)
    assert _words(" ".join(pieces)) == _words(text)
    # pieces that could be cut at punctuation stay within the bound
    punctuated = [p for p in pieces if re.search(r"[,;:.]", p)]
    assert all(len(p) <= MAX_PIECE_CHARS for p in punctuated)


def test_no_empty_pieces_from_punctuation_runs() -> None:
    pieces = split_text("Well... , ; okay!!! — fine.")
    assert all(p.strip() for p in pieces)
    assert _words(" ".join(pieces)) == ["Well", "okay", "fine"]


def test_line_breaks_that_end_a_thought_split_pieces() -> None:
    text = "Shopping list\nMilk\nEggs\n- bread\n- butter\n\nThe weather is\nnice today. Bye"
    assert split_text(text) == [
        "Shopping list",
        "Milk",
        "Eggs",
        "bread",
        "butter",
        "The weather is nice today.",
        "Bye",
    ]
    # hard-wrapped prose stays one sentence
    assert split_text("This is hard wrapped\nprose that continues here.") == [
        "This is hard wrapped prose that continues here."
    ]
