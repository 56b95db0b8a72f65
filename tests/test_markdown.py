"""Language-model replies read as a person would: Markdown, links, paths and symbols.

Fast tier: text in, text out (synth/markdown.py and the normalizer's reply forms), and the
stream segmenter fed 5-character deltas as Home Assistant streams a reply.
"""

from __future__ import annotations

import pytest

from wyoming_kokoro_gguf.server.segmenter import TextSegmenter
from wyoming_kokoro_gguf.synth.markdown import speech_text
from wyoming_kokoro_gguf.synth.normalize import speakable
from wyoming_kokoro_gguf.synth.text import iter_pieces


def listener(text: str, language: str = "en-us") -> str:
    """What the engine reads for ``text``: Markdown, pieces, normalizer (before espeak-ng)."""
    pieces = iter_pieces(speech_text(text, language))
    return " ".join(filter(None, (speakable(piece, language) for piece in pieces)))


def deltas(text: str, size: int = 5) -> list[str]:
    return [text[n : n + size] for n in range(0, len(text), size)]


def segment(text: str, size: int = 5) -> list[tuple[int, str]]:
    """(number of deltas fed when the unit came out, unit); the end of the text is one more."""
    segmenter = TextSegmenter()
    out = []
    parts = deltas(text, size)
    for n, delta in enumerate(parts, start=1):
        out += [(n, unit) for unit in segmenter.feed(delta)]
    return out + [(len(parts) + 1, unit) for unit in segmenter.finish()]


# --------------------------------------------------------------------- the issue's examples

ISSUE_TABLE = [
    ("# Summary", "Summary."),
    ("**Note:** the fan is *off*.", "Note: the fan is off."),
    ("Run `ha core restart` now.", "Run ha core restart now."),
    ("See [the docs](https://www.home-assistant.io/docs/).", "See the docs."),
    ("Go to /config/automations", "Go to config, automations"),
    ("It's 50/50.", "It's fifty fifty."),
    (
        "Price: $0.32/kWh, or 25 ct/kWh.",
        "Price: thirty-two cents per kilowatt hour, or twenty-five cents per kilowatt hour.",
    ),
    ("The code is 4-2-7-1.", "The code is four two seven one."),
    ("Use ≥ 2 A & ≤ 10 A", "Use at least two amps and at most ten amps"),
    (
        "| Day | High |\n|---|---|\n| Monday | 21 °C |",
        "Day, High. Monday, twenty-one degrees Celsius.",
    ),
    ("Add this:\n```yaml\nautomation:\n  - alias: Night\n```", "Add this: Code omitted."),
]


@pytest.mark.parametrize(("text", "heard"), ISSUE_TABLE)
def test_the_issue_examples_read_as_a_listener_expects(text: str, heard: str) -> None:
    assert listener(text) == heard


# --------------------------------------------------------------------- Markdown

MARKDOWN = [
    # emphasis, strikethrough, inline code, headings, quotes, rules
    ("This is ***very*** __important__ and ~~old~~.", "This is very important and old."),
    ("## Today's weather", "Today's weather."),
    ("### Done!", "Done!"),
    ("> The door is locked.", "The door is locked."),
    ("Above\n\n---\n\nBelow", "Above\n\nBelow"),
    ("Weather\n=======", "Weather."),
    # lists: markers dropped, each item a sentence
    ("- Milk\n- Eggs\n- **Bread**", "Milk.\n\nEggs.\n\nBread."),
    ("* Milk\n+ Eggs", "Milk.\n\nEggs."),
    ("1. Open *Settings*.\n2. Tap **Add**", "Open Settings.\n\nTap Add."),
    ("- Lights:\n  - kitchen\n    - on", "Lights:\n\nkitchen.\n\non."),
    ("- [ ] buy milk\n- [x] pay the bill.", "buy milk.\n\npay the bill, done."),
    ("[x] marks the spot", "[x] marks the spot"),
    # links and images
    ("[Open the dashboard](http://homeassistant.local:8123/lovelace)", "Open the dashboard"),
    ("![A chart](https://x.io/c.png) Usage is up.", "Usage is up."),
    # a link to a page of Home Assistant, not the "[word](/phonemes/)" of synth/markup.py
    ("Open [the settings](/config/) page.", "Open the settings page."),
    ("<https://www.home-assistant.io>", "https://www.home-assistant.io"),
    # tables, with and without outer pipes
    ("| Room | State |\n|:---|---:|\n| Kitchen | **on** |", "Room, State.\nKitchen, on."),
    ("Room | State\n--- | ---\nHall | off", "Room, State\nHall, off"),
    # code
    ("Set `light.kitchen_ceiling` to 50%.", "Set light.kitchen ceiling to 50%."),
    ("```\nha core restart\n```", "ha core restart"),
    ("```yaml\nservice: light.turn_on\ntarget:\n  area_id: kitchen\n```", "Code omitted."),
    ("~~~\n" + "x" * 80 + "\n~~~", "Code omitted."),
    # what is not Markdown keeps its meaning
    ("5 * 3 = 15", "5 * 3 = 15"),
    ("Ticket #3 is open.", "Ticket #3 is open."),
    ("snake_case_name and 2*3", "snake_case_name and 2*3"),
    ("It is 21 °C. Humidity 40%.", "It is 21 °C. Humidity 40%."),
    # inline pronunciations and say-as directives are kept for synth/markup.py
    ("Say [Kokoro](/kˈOkəɹO/) **now**.", "Say [Kokoro](/kˈOkəɹO/) now."),
    ("Read {{say characters A_B}} *twice*.", "Read {{say characters A_B}} twice."),
    # unpaired marks of a reply cut short are not read
    ("**Note", "Note"),
    ("Run `ha", "Run ha"),
]


@pytest.mark.parametrize(("text", "spoken"), MARKDOWN)
def test_markdown_is_read_as_a_listener_hears_it(text: str, spoken: str) -> None:
    assert speech_text(text) == spoken


def test_a_long_code_block_is_omitted_in_the_text_language() -> None:
    code = "```\nline one\nline two\n```"
    assert speech_text(code, "fr-fr") == "Code omis."
    assert speech_text(code, "es") == "Código omitido."
    assert speech_text(code, "xx") == "Code omitted."


def test_plain_text_is_unchanged() -> None:
    text = "The living room is at 21.5 °C. Outside it is -3 °C with 87% humidity."
    assert speech_text(text) == text
    assert speech_text("  ") == "  "


@pytest.mark.parametrize(
    ("text", "heard"),
    [
        ("5 * 3", "five times three"),
        ("#3", "number three"),
        ("# 3 rooms", "three rooms."),
        ("Use #smarthome", "Use smarthome"),
    ],
)
def test_a_lone_star_or_hash_keeps_its_meaning(text: str, heard: str) -> None:
    assert listener(text) == heard


# --------------------------------------------------------------------- the stream

REPLIES = [
    "**Note:** the fan is *off*. The heater is **on. Really on.** That is all.",
    "See [the Home Assistant docs](https://www.home-assistant.io/docs/automation/). Then retry.",
    "Your list:\n- Milk\n- Eggs\n- **Whole grain** bread\n\nAnything else?",
    "## Steps\n1. Open **Settings**.\n2. Tap `Add Integration`. Wait.\n3. Done.",
    "Here it is:\n```yaml\nautomation:\n  - alias: Lights. On.\n    trigger: []\n```\nRestart.",
    "| Day | High | Low |\n|---|---|---|\n| Mon. | 21 °C. | 12 °C. |\n| Tue. | 19 °C | 9 °C |",
    "It is 5 * 3 = 15. Ticket #3 is open. The `climate.living_room` is at 21 °C.",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_the_segmenter_never_cuts_inside_markup(reply: str) -> None:
    """Every unit of a 5-character stream parses alone: no mark is left to be read, and the
    units read as the whole reply does."""
    units = [unit for _, unit in segment(reply)]
    for unit in units:
        spoken = speech_text(unit)
        assert not any(mark in spoken for mark in ("**", "`", "](", "|", "```")), (unit, spoken)
    assert " ".join(listener(u) for u in units).split() == listener(reply).split()


@pytest.mark.parametrize("reply", REPLIES)
def test_the_units_do_not_depend_on_the_deltas(reply: str) -> None:
    whole = [unit for _, unit in segment(reply, size=len(reply))]
    for size in (1, 3, 5, 8):
        assert [unit for _, unit in segment(reply, size)] == whole


def test_a_list_arriving_item_by_item_is_spoken_item_by_item() -> None:
    reply = "Your shopping list:\n- Milk\n- Eggs\n- Bread\n"
    units = segment(reply)
    assert [u for _, u in units] == ["Your shopping list:", "- Milk", "- Eggs", "- Bread"]
    for (fed, unit), (_, after) in zip(units, units[1:], strict=False):
        # each unit comes out before the next item has fully arrived
        assert fed * 5 < reply.index(after) + len(after), unit


def test_markup_does_not_hold_back_the_first_audio() -> None:
    """A first sentence in bold, or with a link, comes out as soon as its end is seen."""
    for reply in (
        "**The kitchen light is on.** The hall light is off too.",
        "See [the docs](https://www.home-assistant.io/docs/). It explains how to do it.",
    ):
        fed, first = segment(reply)[0]
        assert fed * 5 <= reply.index(first) + len(first) + 5 < len(reply)


def test_a_code_block_is_one_unit_and_the_text_around_it_is_not_held() -> None:
    reply = "Add this:\n```yaml\nlight:\n  - platform: x. y\n```\nThen restart."
    units = segment(reply)
    assert [u for _, u in units] == [
        "Add this:",
        "```yaml\nlight:\n  - platform: x. y\n```",
        "Then restart.",
    ]
    assert units[0][0] * 5 <= reply.index("```") + 5  # before the code starts arriving


def test_a_numbered_item_is_not_cut_after_its_number() -> None:
    assert [u for _, u in segment("1. Open Settings.\n2. Tap Add.")] == [
        "1. Open Settings.",
        "2. Tap Add.",
    ]


@pytest.mark.parametrize(
    ("text", "heard", "units"),
    [
        (
            "Open 9 a.m. - 5 p.m. daily. Closed Sundays.",
            "Open nine A M to five P M daily. Closed Sundays.",
            ["Open 9 a.m. - 5 p.m. daily.", "Closed Sundays."],
        ),
        ("Open 9am-5pm.", "Open nine A M to five P M.", ["Open 9am-5pm."]),
        ("From 9 a.m. to 5 p.m. today.", "From nine A M to five P M today.", None),
        (
            "It is 5 p.m. Then dinner.",
            "It is five P M. Then dinner.",
            ["It is 5 p.m.", "Then dinner."],
        ),
        ("Done.\n- Next one.", "Done. Next one.", ["Done.", "- Next one."]),
    ],
)
def test_opening_hours_are_one_sentence(text: str, heard: str, units: list[str] | None) -> None:
    """A period after "a.m." ends the sentence only where one ends: no pause (and no falling
    tone) inside "9 a.m. - 5 p.m.", in the one-shot text nor in a streamed reply's units."""
    assert listener(text) == heard
    assert [u for _, u in segment(text)] == (units or [text])


# --------------------------------------------------------------------- symbols and forms

FORMS = [
    # "per" between a price or unit and a unit
    ("$0.32/kWh", "thirty-two cents per kilowatt hour"),
    ("25 ct/kWh", "twenty-five cents per kilowatt hour"),
    ("prices in $/kWh", "prices in dollars per kilowatt hour"),
    ("€/kWh", "euros per kilowatt hour"),
    ("12 €/month", "twelve euros per month"),
    ("3 kWh/day", "three kilowatt hours per day"),
    ("15 km/h and 3 m/s", "fifteen kilometers per hour and three meters per second"),
    ("$9.99/mo", "nine dollars and ninety-nine cents per month"),
    # ratios and fractions
    ("a 50/50 split", "a fifty fifty split"),
    ("open 24/7", "open twenty-four seven"),
    ("1/2 cup", "one half cup"),
    # paths, URLs, e-mail addresses: no "or", no "slash", no scheme
    ("Go to /config/automations", "Go to config, automations"),
    ("Open /config/integrations/dashboard.", "Open config, integrations, dashboard."),
    ("Visit https://www.home-assistant.io/docs/.", "Visit home assistant dot I O, docs."),
    ("See www.example.com for more.", "See example dot com for more."),
    (
        "Open http://homeassistant.local:8123 now",
        "Open homeassistant dot local, port eight one two three now",
    ),
    ("home-assistant.io", "home assistant dot I O"),
    ("Mail john.doe@example.com today", "Mail john dot doe at example dot com today"),
    ("the on/off switch", "the on or off switch"),
    # Home Assistant's ids: their words with "dot", like a host, never a web domain's letters
    ("Set light.kitchen_ceiling to 50%.", "Set light dot kitchen ceiling to fifty percent."),
    ("I turned on switch.tv.", "I turned on switch dot tv."),
    ("Call light.turn_on for binary_sensor.back_door.",
     "Call light dot turn on for binary sensor dot back door."),
    ("See sensor.example.com today.", "See sensor dot example dot com today."),
    ("It is time.Then we go.", "It is time.Then we go."),
    # comparison signs
    ("Use ≥ 2 A & ≤ 10 A", "Use at least two amps and at most ten amps"),
    ("if x < 5", "if x less than five"),
    ("above >20 °C", "above more than twenty degrees Celsius"),
    ("±0.5 °C", "plus or minus zero point five degrees Celsius"),
    ("≈ 20 W", "about twenty watts"),
    ("Settings > Devices & Services", "Settings, Devices and Services"),
    ("Settings → Areas", "Settings, Areas"),
    # digit codes are no ranges; ranges still are
    ("The code is 4-2-7-1.", "The code is four two seven one."),
    ("PIN 12-34-56", "PIN one two, three four, five six"),
    ("3-5 days", "three to five days"),
    ("on 2026-12-02", "on December second, twenty twenty-six"),
    ("Order #A12-345 shipped.", "Order A one two, three four five shipped."),
    ("Model RX-100 and PM2.5", "Model RX-one hundred and P M two point five"),
    # compass points where wind or direction is spoken of
    ("Wind from the NW at 15 km/h.", "Wind from the northwest at fifteen kilometers per hour."),
    ("Wind: 12 km/h SSE, gusts 30 km/h.", "Wind: twelve kilometers per hour south-southeast,"
     " gusts thirty kilometers per hour."),
    ("The wind turns W later.", "The wind turns W later."),
    ("It blows from the S.", "It blows from the south."),
    ("NW Energy is my provider.", "NW Energy is my provider."),
    ("The heater draws 5 W.", "The heater draws five watts."),
]  # fmt: skip


@pytest.mark.parametrize(("text", "heard"), FORMS)
def test_symbols_and_forms_of_replies(text: str, heard: str) -> None:
    assert speakable(text, "en-us") == heard


@pytest.mark.parametrize(
    ("text", "language", "heard"),
    [
        ("0,30 €/kWh", "es", "treinta céntimos por kilovatios hora"),
        ("2 €/kWh", "fr", "deux euros par kilowattheure"),
        ("50/50", "it", "cinquanta cinquanta"),
        ("x ≥ 5", "en-gb", "x at least five"),
        ("< 5 °C", "fr-fr", "moins de cinq degrés Celsius"),
        ("4-2-7-1", "pt-br", "quatro dois sete um"),
    ],
)
def test_forms_in_other_languages(text: str, language: str, heard: str) -> None:
    assert speakable(text, language) == heard


# --------------------------------------------------------------------- the reply corpus


def test_reply_corpus_references_are_what_the_text_front_end_says() -> None:
    from corpora import REPLIES, SYMBOL_NAMES

    assert len(REPLIES) >= 40
    for text, reference in REPLIES:
        assert listener(text) == reference, text
        assert not any(name in reference.lower() for name in SYMBOL_NAMES)
