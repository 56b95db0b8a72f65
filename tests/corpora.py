"""The home corpora the tests and script/benchmark speak and judge (one copy of each).

HOME_AUTOMATION: English home-automation sentences covering every normalizer category, each with
what a listener should hear (tests/test_normalize.py checks the references against the
normalizer).  JAPANESE and MANDARIN: home sentences for the per-language front ends
(tests/test_g2p.py).  Written for this project.
"""

from __future__ import annotations

import re

# Home-automation sentences covering every category -> what a listener should hear.
HOME_AUTOMATION = [
    (
        "The living room is at 21.5 °C.",
        "The living room is at twenty-one point five degrees Celsius.",
    ),
    (
        "Outside it is -3 °C with 87% humidity.",
        "Outside it is minus three degrees Celsius with eighty-seven percent humidity.",
    ),
    ("The freezer reads -18 °F.", "The freezer reads minus eighteen degrees Fahrenheit."),
    (
        "The bedroom thermostat is set to 68 °F.",
        "The bedroom thermostat is set to sixty-eight degrees Fahrenheit.",
    ),
    (
        "Tomorrow will be 10-20 °C and sunny.",
        "Tomorrow will be ten to twenty degrees Celsius and sunny.",
    ),
    (
        "The washing machine uses 450 W right now.",
        "The washing machine uses four hundred fifty watts right now.",
    ),
    (
        "Solar production today is 12.4 kWh.",
        "Solar production today is twelve point four kilowatt hours.",
    ),
    ("The charger draws 7.2 kW.", "The charger draws seven point two kilowatts."),
    (
        "Mains voltage is 230 V at 50 Hz.",
        "Mains voltage is two hundred thirty volts at fifty hertz.",
    ),
    ("The heater draws 8 A.", "The heater draws eight amps."),
    ("Air pressure is 1013 hPa.", "Air pressure is one thousand thirteen hectopascals."),
    (
        "The barometer shows 29.92 inHg.",
        "The barometer shows twenty-nine point nine two inches of mercury.",
    ),
    ("It rained 4.5 mm last night.", "It rained four point five millimeters last night."),
    ("Snow depth is 12 cm.", "Snow depth is twelve centimeters."),
    ("The car is 250 m away.", "The car is two hundred fifty meters away."),
    ("Your commute is 18 km today.", "Your commute is eighteen kilometers today."),
    ("The gust reached 45 km/h.", "The gust reached forty-five kilometers per hour."),
    ("Wind speed is 12 mph from the north.", "Wind speed is twelve miles per hour from the north."),
    ("The breeze is 3 m/s.", "The breeze is three meters per second."),
    ("The boat logged 6 kn.", "The boat logged six knots."),
    ("The water tank holds 120 L.", "The water tank holds one hundred twenty liters."),
    ("The pool needs 5 gal of water.", "The pool needs five gallons of water."),
    ("Gas use this month is 35 m³.", "Gas use this month is thirty-five cubic meters."),
    ("The hallway light level is 320 lx.", "The hallway light level is three hundred twenty lux."),
    (
        "Carbon dioxide in the office is 950 ppm.",
        "Carbon dioxide in the office is nine hundred fifty parts per million.",
    ),
    ("Fine dust is 12 µg/m³.", "Fine dust is twelve micrograms per cubic meter."),
    ("The noise level is 42 dB.", "The noise level is forty-two decibels."),
    ("The sensor signal is -67 dBm.", "The sensor signal is minus sixty-seven decibel milliwatts."),
    ("The download was 2.5 GB.", "The download was two point five gigabytes."),
    ("Internet speed is 300 Mbit/s.", "Internet speed is three hundred megabits per second."),
    ("Your heart rate is 72 bpm.", "Your heart rate is seventy-two beats per minute."),
    ("The parcel weighs 2 kg.", "The parcel weighs two kilograms."),
    ("Add 250 g of flour.", "Add two hundred fifty grams of flour."),
    ("The dog weighs 40 lb.", "The dog weighs forty pounds."),
    ("The battery is at 100%.", "The battery is at one hundred percent."),
    ("Only 1 window is open.", "Only one window is open."),
    ("The timer has 2 min left.", "The timer has two minutes left."),
    ("The roast needs 1 h 30 min.", "The roast needs one hour thirty minutes."),
    ("The kettle boils in 45 s.", "The kettle boils in forty-five seconds."),
    ("Your alarm is set for 6:45 AM.", "Your alarm is set for six forty-five A M."),
    ("The meeting starts at 14:30.", "The meeting starts at two thirty P M."),
    ("The bus leaves at 07:15.", "The bus leaves at seven fifteen A M."),
    ("Dinner is at 7 pm.", "Dinner is at seven P M."),
    (
        "The garbage is collected on 2026-12-02.",
        "The garbage is collected on December second, twenty twenty-six.",
    ),
    (
        "Your subscription ends on 03/15/2027.",
        "Your subscription ends on March fifteenth, twenty twenty-seven.",
    ),
    (
        "The dentist appointment is on Tue., Mar. 4.",
        "The dentist appointment is on Tuesday, March fourth.",
    ),
    ("The party is on Sat., Jan. 9.", "The party is on Saturday, January ninth."),
    ("School starts on Sept. 3rd.", "School starts on September third."),
    ("It is the 21st floor.", "It is the twenty-first floor."),
    ("Use 3/4 of the tank.", "Use three quarters of the tank."),
    (
        "The electricity bill is $84.50.",
        "The electricity bill is eighty-four dollars and fifty cents.",
    ),
    ("Gas costs €1.79 per liter.", "Gas costs one euro and seventy-nine cents per liter."),
    ("The ticket was £12.", "The ticket was twelve pounds."),
    ("Dr. Smith called about the results.", "Doctor Smith called about the results."),
    ("The store on Main St. closes soon.", "The store on Main Street closes soon."),
    ("The walk takes approx. 5 minutes.", "The walk takes approximately five minutes."),
    ("Mr. and Mrs. Lee are at the door.", "Mister and Missus Lee are at the door."),
    ("Lights & fans are off.", "Lights and fans are off."),
    (
        "Call 555-123-4567 for the plumber.",
        "Call five five five, one two three, four five six seven for the plumber.",
    ),
    (
        "The router is at 192.168.1.1.",
        "The router is at one nine two dot one six eight dot one dot one.",
    ),
    ("Firmware v2.3.1 is available.", "Firmware version two point three point one is available."),
    ("I turned off the kitchen lights.", "I turned off the kitchen lights."),
    ("I will remind you in 10 minutes.", "I will remind you in ten minutes."),
    ("There are 3-5 packages waiting.", "There are three to five packages waiting."),
    (
        "The population is 1,234,567.",
        "The population is one million two hundred thirty-four thousand five hundred sixty-seven.",
    ),
]


def letters(text: str) -> str:
    """How the English corpus is scored: "A M" and "AM" are the same two letters to a listener,
    "litre" is "liter"."""
    text = re.sub(r"\b(lit|met)re", r"\1er", text)
    return re.sub(r"\b([AaPp])\.? ?[Mm]\b\.?", r"\1m", text)


# Whisper's spellings of what was heard that the normalizer does not read (same unit, other
# symbol): "dBmW" is how Whisper writes "decibel milliwatts".
WHISPER_SPELLINGS = {"dBmW": "dBm"}
_DIGIT_RUN = re.compile(r"\d(?:[\d.,:-]*\d)?")


def english_pair(reference: str, transcript: str) -> tuple[str, str]:
    """(reference, heard) as the English corpus is scored, from Whisper's raw transcript.

    Whisper writes what it heard as numbers in digits, which do not say how they were read:
    "555-123-4567" heard digit by digit comes back as "555123-4567", which the normalizer reads
    as a range of two large numbers.  Each run of digits is therefore read either as the
    normalizer reads it in its sentence or digit by digit, whichever is closer to the reference;
    the digits themselves must still be right (a wrong digit is a wrong word either way).
    """
    from asr import word_errors

    from wyoming_kokoro_gguf.synth.normalize import speakable

    for written, spelled in WHISPER_SPELLINGS.items():
        transcript = re.sub(rf"\b{written}\b", spelled, transcript)
    parts = _DIGIT_RUN.split(transcript)
    runs = _DIGIT_RUN.findall(transcript)
    want = letters(reference)

    def heard(readings: list[str]) -> str:
        text = "".join(p + r for p, r in zip(parts, [*readings, ""], strict=True))
        return letters(speakable(text, "en-us"))

    chosen = list(runs)
    for n, run in enumerate(runs):
        digit_by_digit = [*chosen[:n], " ".join(re.findall(r"\d", run)), *chosen[n + 1 :]]
        if word_errors(want, heard(digit_by_digit))[0] < word_errors(want, heard(chosen))[0]:
            chosen = digit_by_digit
    return want, heard(chosen)


JAPANESE = (
    "今日は良い天気です。",
    "リビングの電気を消しました。",
    "寝室のエアコンを25度に設定しました。",
    "明日の朝7時にアラームをセットしてください。",
    "玄関の鍵が開いています。",
    "お風呂が沸きました。",
    "洗濯機の運転が終わりました。",
    "台所の温度は18度です。",
    "今から音楽を再生します。",
    "カーテンを閉めてもいいですか？",
    "子供部屋の窓が開いています。",
    "掃除機を止めました。",
)

MANDARIN = (
    "今天天气很好。",
    "客厅的灯已经关了。",
    "卧室的空调调到25度。",
    "明天早上7点叫醒我。",
    "门没有锁好。",
    "洗衣机已经洗完了。",
    "现在开始播放音乐。",
    "厨房的温度是18度。",
)
