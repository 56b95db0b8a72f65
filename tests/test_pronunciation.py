"""Pronunciation overrides (lexicon files, inline markup) and SSML, without the model."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from wyoming_kokoro_gguf.server.segmenter import TextSegmenter
from wyoming_kokoro_gguf.synth import lexicon, markup, ssml
from wyoming_kokoro_gguf.synth.lexicon import Entry, Lexicon
from wyoming_kokoro_gguf.synth.text import iter_pieces

# ----------------------------------------------------------------------------- lexicon


def _write(path: Path, text: str, bump: float = 0.0) -> None:
    path.write_text(text, encoding="utf-8")
    if bump:  # a later mtime than the previous write, whatever the file system's resolution
        stamp = time.time() + bump
        os.utime(path, (stamp, stamp))


@pytest.mark.parametrize(
    ("line", "entry"),
    [
        ("Kokoro = /kˈOkəɹO/", Entry("Kokoro", phonemes="kˈOkəɹO")),
        ("  Siobhan   =  shi vawn ", Entry("Siobhan", respelling="shi vawn")),
        ("Home  Assistant = /hˈOm əsˈɪstənt/", Entry("Home Assistant", phonemes="hˈOm əsˈɪstənt")),
        ("# a comment = /x/", None),
        ("", None),
    ],
)
def test_lexicon_lines(line: str, entry: Entry | None) -> None:
    assert lexicon.parse_line(line) == entry


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("Kokoro /kˈOkəɹO/", "no '='"),
        ("Kokoro = /kˈOkəɹO", "closing '/'"),
        ("Kokoro = //", "closing '/' missing or empty"),
        (" = /abc/", "not a word"),
        ("Kokoro = see https://x.y", "respelling"),
        ("Kokoro = /a(b)/", "may not contain"),
    ],
)
def test_bad_lexicon_lines_say_why(line: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
        lexicon.parse_line(line)


def test_bad_lines_are_reported_once_with_file_and_line_and_the_rest_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "lexicon.en.txt"
    _write(path, "Kokoro = /kˈOkəɹO/\nbroken line\nNala = nahla\n")
    lex = Lexicon([tmp_path], check_seconds=0)
    with caplog.at_level(logging.WARNING, "wyoming_kokoro_gguf.synth.lexicon"):
        assert lex.apply("kokoro and NALA", "en-us") == "[Kokoro](/kˈOkəɹO/) and nahla"
        lex.apply("again", "en-us")  # unchanged file: not re-read, not reported again
    errors = [r.getMessage() for r in caplog.records if "line 2" in r.getMessage()]
    assert len(errors) == 1 and str(path) in errors[0] and "no '='" in errors[0]


def test_lexicon_reloads_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.en.txt"
    _write(path, "Nala = nahla\n")
    lex = Lexicon([tmp_path], check_seconds=0)
    assert lex.apply("Nala", "en-us") == "nahla"
    _write(path, "Nala = nala la\n", bump=5)
    assert lex.apply("Nala", "en-us") == "nala la"
    path.unlink()
    assert lex.apply("Nala", "en-us") == "Nala"


def test_lexicon_checks_the_files_at_most_every_few_seconds(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.en.txt"
    _write(path, "Nala = nahla\n")
    lex = Lexicon([tmp_path], check_seconds=60)
    assert lex.apply("Nala", "en-us") == "nahla"
    _write(path, "Nala = other\n", bump=5)
    assert lex.apply("Nala", "en-us") == "nahla"  # not looked at again yet
    lex.refresh(force=True)
    assert lex.apply("Nala", "en-us") == "other"


def test_lexicon_matches_whole_words_any_case_and_the_most_specific_language(
    tmp_path: Path,
) -> None:
    _write(tmp_path / "lexicon.en.txt", "tom = tomm\nHome Assistant = home assistant thing\n")
    _write(tmp_path / "lexicon.en-gb.txt", "tom = thom\n")
    _write(tmp_path / "lexicon.fr.txt", "tom = tome\n")
    lex = Lexicon([tmp_path], check_seconds=0)
    assert lex.apply("Tom, tomato, TOM.", "en-us") == "tomm, tomato, tomm."
    assert lex.apply("Tom", "en-gb") == "thom"
    assert lex.apply("Tom", "fr-fr") == "tome"
    assert lex.apply("Tom", "es") == "Tom"
    assert lex.apply("my home  assistant", "en-us") == "my home  assistant"  # spacing differs
    assert lex.apply("my Home Assistant", "en-us") == "my home assistant thing"


def test_a_missing_data_directory_is_no_error(tmp_path: Path) -> None:
    assert Lexicon([tmp_path / "absent"], check_seconds=0).apply("x", "en-us") == "x"


# ----------------------------------------------------------------------------- inline markup


def test_inline_phonemes_become_placeholders_that_survive_piece_cutting() -> None:
    text, given = markup.protect("Hi [Dr. Kokoro](/kˈOkəɹO/). Next [one](wun) here.")
    assert given == ["kˈOkəɹO"] and "wun" in text and "Kokoro" not in text
    pieces = list(iter_pieces(text))
    found = [p for piece in pieces for p in markup.parts(piece, given)]
    assert (True, "kˈOkəɹO") in found


def test_markdown_links_are_not_markup() -> None:
    text = "See [the docs](https://example.com/x)."
    assert markup.protect(text) == (text, [])


def test_directives_split_the_text_into_spans() -> None:
    spans = markup.spans("a {{pause 0.5}}{{voice bf_emma}}{{rate 1.2}}b{{lang fr-fr}} c")
    assert spans == [
        markup.Span("a "),
        markup.Span(pause=0.5),
        markup.Span("b", voice="bf_emma", rate=1.2),
        markup.Span(" c", voice="bf_emma", rate=1.2, language="fr-fr"),
    ]


@pytest.mark.parametrize("value", ["99999", "1e308", "inf", "nan", "-3", "x"])
def test_pauses_are_bounded(value: str) -> None:
    for span in markup.spans(f"a{{{{pause {value}}}}}b"):
        assert 0 <= span.pause <= markup.MAX_PAUSE_S


@pytest.mark.parametrize(
    ("kind", "fmt", "content", "words"),
    [
        ("characters", "", "KIT", "K, I, T"),
        ("characters", "", "a1", "A, one"),
        ("cardinal", "", "1,234", "one thousand two hundred thirty-four"),
        ("ordinal", "", "3", "third"),
        ("digits", "", "1234", "one two three four"),
        ("telephone", "", "555-0123", "five five five, zero one two three"),
        ("date", "mdy", "12/03/2026", None),
        ("time", "", "6:45 PM", "six forty-five P M"),
        ("cardinal", "", "lots", "lots"),
    ],
)
def test_say_as(kind: str, fmt: str, content: str, words: str | None) -> None:
    out = markup.say_as(kind, fmt, content, "en-us")
    if words is None:
        assert "December" in out and "third" in out and "2026" not in out
    else:
        assert out == words


# ----------------------------------------------------------------------------- SSML


def test_ssml_features_compile_to_units() -> None:
    doc = (
        '<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US">'
        '<p><s>Hello <break time="500ms"/> world.</s><s>Next.</s></p>'
        '<prosody rate="slow">slow <voice name="bf_emma">other</voice></prosody>'
        '<lang xml:lang="fr-FR">bonjour</lang> <sub alias="World Wide Web">WWW</sub> '
        '<say-as interpret-as="ordinal">2</say-as> '
        '<phoneme alphabet="ipa" ph="kˈOkəɹO">Kokoro</phoneme> <break strength="strong"/>'
        "</speak>"
    )
    assert ssml.units(doc) == [
        "{{lang en-us}}Hello",
        "{{pause 0.500}}",
        "{{lang en-us}}world.",
        "{{lang en-us}}Next.",
        "{{rate 0.800}}{{lang en-us}}slow",
        "{{voice bf_emma}}{{rate 0.800}}{{lang en-us}}other",
        "{{lang fr-fr}}bonjour",
        "{{lang en-us}}World Wide Web {{say ordinal 2}} [Kokoro](/kˈOkəɹO/)",
        "{{pause 0.700}}",
    ]


@pytest.mark.parametrize(
    ("rate", "factor"),
    [("x-fast", 1.5), ("150%", 1.5), ("+20%", 1.2), ("-50%", 0.5), ("0.9", 0.9), ("??", 1.0)],
)
def test_prosody_rates(rate: str, factor: float) -> None:
    units = ssml.units(f'<speak><prosody rate="{rate}">x</prosody></speak>')
    spans = markup.spans(units[0])
    assert spans[0].rate == pytest.approx(factor, abs=1e-3)


def test_unknown_elements_are_read_as_text_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "wyoming_kokoro_gguf.synth.ssml"):
        units = ssml.units("<speak><foo>one</foo> <bar>two <baz>three</baz></bar></speak>")
    assert units == ["one two three"]
    assert len(caplog.records) == 1


@pytest.mark.parametrize(
    ("doc", "text"),
    [
        ("<speak>Hello <b", "Hello"),
        ("<speak>Hello</speek>", "Hello"),
        ("Tom &amp; Jerry", "Tom & Jerry"),  # no root element: wrapped
        ("<speak>x</speak><speak>y</speak>", "x y"),
        ("", None),
        ("<speak>a {{voice x}} [b](/c/)</speak>", "a voice x b (/c/)"),  # no smuggled directives
    ],
)
def test_malformed_ssml_is_read_as_plain_text(doc: str, text: str | None) -> None:
    assert ssml.units(doc) == ([text] if text else [])


def test_entity_declarations_are_refused_billion_laughs() -> None:
    names = ["lol", *(f"lol{i}" for i in range(1, 10))]
    laughs = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY {name} "{("&" + before + ";") * 10}">'
        for before, name in zip(names, names[1:], strict=False)
    )
    doc = f"<?xml version='1.0'?><!DOCTYPE speak [{laughs}]><speak>&lol9;</speak>"
    started = time.perf_counter()
    units = ssml.units(doc)
    assert "lollol" not in " ".join(units)
    # a hang guard, not a speed check: expanding 10^9 laughs would take minutes and gigabytes
    assert time.perf_counter() - started < 30.0


def test_external_entities_are_never_fetched(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret", encoding="utf-8")
    doc = f'<!DOCTYPE speak [<!ENTITY x SYSTEM "file://{secret}">]><speak>a &x; b</speak>'
    assert "secret" not in " ".join(ssml.units(doc))


def test_deep_nesting_is_bounded() -> None:
    deep = "<speak>" + "<s>" * 50_000 + "deep" + "</s>" * 50_000 + "</speak>"
    assert ssml.units(deep) == ["deep"]
    ok = "<speak>" + "<prosody>" * 20 + "fine" + "</prosody>" * 20 + "</speak>"
    assert ssml.units(ok) == ["fine"]


def test_huge_breaks_are_capped() -> None:
    units = ssml.units('<speak>a<break time="100000000s"/>b<break time="1e9ms"/>c</speak>')
    pauses = [s.pause for u in units for s in markup.spans(u) if s.pause]
    assert pauses and all(p <= markup.MAX_PAUSE_S for p in pauses)


def test_oversized_ssml_is_read_as_text() -> None:
    doc = "<speak>" + "word " * (ssml.MAX_SSML_CHARS // 5) + "</speak>"
    units = ssml.units(doc)
    assert units and len(units[0]) <= ssml.MAX_SSML_CHARS


def test_the_first_data_directory_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "z", tmp_path / "a"
    first.mkdir(), second.mkdir()
    _write(first / "lexicon.en.txt", "Nala = first\n")
    _write(second / "lexicon.en.txt", "Nala = second\nTom = tomm\n")
    lex = Lexicon([first, second], check_seconds=0)
    assert lex.apply("Nala Tom", "en-us") == "first tomm"


def test_a_stream_is_never_cut_inside_inline_markup() -> None:
    text = "Hi. Say [Dr. Who. Ok](/dˈɑktəɹ hˈu/) now. Then [a, b, c](/ˈA, bˈi, sˈi/) today. [x. Y."
    segmenter = TextSegmenter(first_clause_chars=5, clause_chars=5)
    units = [u for n in range(0, len(text), 3) for u in segmenter.feed(text[n : n + 3])]
    units += segmenter.finish()
    assert units == [
        "Hi.",
        "Say [Dr. Who. Ok](/dˈɑktəɹ hˈu/) now.",
        "Then [a, b, c](/ˈA, bˈi, sˈi/) today.",
        "[x. Y.",
    ]
