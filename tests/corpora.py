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


# Language-model replies as Assist's conversation agents write them (Markdown as OpenAI, Ollama
# and Gemini use it) -> the words a listener must hear.  Spoken through the server in 5-character
# deltas by tests/test_asr.py; tests/test_markdown.py checks the references against the text
# front end.  Written for this project.
REPLIES = [
    # weather
    (
        "**Today:** sunny, with a high of 24 °C and a low of 13 °C.",
        "Today: sunny, with a high of twenty-four degrees Celsius and a low of thirteen degrees"
        " Celsius.",
    ),
    (
        "## Weather for tomorrow\n- **Morning:** light rain, 11 °C\n- **Afternoon:** cloudy, 16 °C",
        "Weather for tomorrow. Morning: light rain, eleven degrees Celsius. Afternoon: cloudy,"
        " sixteen degrees Celsius.",
    ),
    (
        "The wind is coming from the **NW** at 20 km/h, with gusts up to 45 km/h.",
        "The wind is coming from the northwest at twenty kilometers per hour, with gusts up to"
        " forty-five kilometers per hour.",
    ),
    (
        "| Day | High | Low |\n|---|---|---|\n| Monday | 21 °C | 12 °C |\n| Tuesday | 18 °C | 9 °C |",
        "Day, High, Low. Monday, twenty-one degrees Celsius, twelve degrees Celsius. Tuesday,"
        " eighteen degrees Celsius, nine degrees Celsius.",
    ),
    (
        "Humidity is *quite high* at **87%**, so it may feel warmer than 19 °C.",
        "Humidity is quite high at eighty-seven percent, so it may feel warmer than nineteen"
        " degrees Celsius.",
    ),
    (
        "Expect ≈ 5 mm of rain tonight, so take an umbrella! ☔",
        "Expect about five millimeters of rain tonight, so take an umbrella!",
    ),
    (
        "> **Weather warning:** strong winds from the SW this evening.",
        "Weather warning: strong winds from the southwest this evening.",
    ),
    (
        "Air pressure is **1013 hPa** and rising, so the weekend looks *dry*.",
        "Air pressure is one thousand thirteen hectopascals and rising, so the weekend looks dry.",
    ),
    # energy
    (
        "Your solar panels produced **18.4 kWh** today, and the house used 12.1 kWh.",
        "Your solar panels produced eighteen point four kilowatt hours today, and the house used"
        " twelve point one kilowatt hours.",
    ),
    (
        "The current price is **$0.32/kWh**, or 25 ct/kWh with your discount.",
        "The current price is thirty-two cents per kilowatt hour, or twenty-five cents per"
        " kilowatt hour with your discount.",
    ),
    (
        "### Energy today\n1. Solar: 18 kWh\n2. Grid: 6 kWh\n3. Battery: 4 kWh",
        "Energy today. Solar: eighteen kilowatt hours. Grid: six kilowatt hours. Battery: four"
        " kilowatt hours.",
    ),
    (
        "The heat pump draws ≥ 2 kW when it runs; the dryer *alone* uses 3 kW.",
        "The heat pump draws at least two kilowatts when it runs; the dryer alone uses three"
        " kilowatts.",
    ),
    (
        "Charging costs about €0.29/kWh, so a full charge of 60 kWh is about €17.",
        "Charging costs about twenty-nine cents per kilowatt hour, so a full charge of sixty"
        " kilowatt hours is about seventeen euros.",
    ),
    (
        "The battery is at **76%** and will be full in about 2 h.",
        "The battery is at seventy-six percent and will be full in about two hours.",
    ),
    (
        "Your average use is 9 kWh/day, which costs about $2.88/day.",
        "Your average use is nine kilowatt hours per day, which costs about two dollars and"
        " eighty-eight cents per day.",
    ),
    (
        "**Tip:** run the dishwasher after 10 pm, when power is *cheapest*.",
        "Tip: run the dishwasher after ten P M, when power is cheapest.",
    ),
    # calendar
    (
        "**Next event:** dentist appointment on *Tuesday* at 3:30 PM.",
        "Next event: dentist appointment on Tuesday at three thirty P M.",
    ),
    (
        "Here's your schedule for tomorrow:\n\n- 9:15 AM: team meeting\n- 12:30 PM: lunch with"
        " Anna\n- 6:45 PM: yoga class",
        "Here's your schedule for tomorrow: nine fifteen A M: team meeting. twelve thirty P M:"
        " lunch with Anna. six forty-five P M: yoga class.",
    ),
    (
        "You have **3 events** on Friday, March 6. The first one starts at 8 am.",
        "You have three events on Friday, March sixth. The first one starts at eight A M.",
    ),
    (
        "# Calendar\nNo events are planned for the weekend. 🎉",
        "Calendar. No events are planned for the weekend.",
    ),
    (
        "Your flight to Lisbon leaves on **2026-05-14** at 07:45.",
        "Your flight to Lisbon leaves on May fourteenth, twenty twenty-six at seven forty-five"
        " A M.",
    ),
    (
        "Reminder: the garbage is collected every *Monday* and *Thursday*.",
        "Reminder: the garbage is collected every Monday and Thursday.",
    ),
    # shopping and to-do lists
    (
        "Your shopping list has 4 items:\n- Milk\n- Eggs\n- Bread\n- Coffee",
        "Your shopping list has four items: Milk. Eggs. Bread. Coffee.",
    ),
    (
        "I added **oat milk** and *bananas* to your shopping list.",
        "I added oat milk and bananas to your shopping list.",
    ),
    (
        "## To-do\n- [ ] Call the plumber\n- [x] Pay the electricity bill",
        "To-do. Call the plumber. Pay the electricity bill, done.",
    ),
    (
        "Done! I removed *eggs* from the list. You still need:\n1. Flour\n2. Sugar",
        "Done! I removed eggs from the list. You still need: Flour. Sugar.",
    ),
    (
        "You have **2 tasks** due today: water the plants and take out the recycling.",
        "You have two tasks due today: water the plants and take out the recycling.",
    ),
    (
        "Buy 2 kg of potatoes, 500 g of carrots and 1 L of milk.",
        "Buy two kilograms of potatoes, five hundred grams of carrots and one liter of milk.",
    ),
    (
        "The list *Hardware store* has screws, a 10 mm drill bit and wood glue.",
        "The list Hardware store has screws, a ten millimeters drill bit and wood glue.",
    ),
    # device states
    (
        "**Living room:** the lights are *on* at 60% brightness.",
        "Living room: the lights are on at sixty percent brightness.",
    ),
    (
        "| Room | Temperature |\n|---|---|\n| Kitchen | 21.5 °C |\n| Bedroom | 19 °C |",
        "Room, Temperature. Kitchen, twenty-one point five degrees Celsius. Bedroom, nineteen"
        " degrees Celsius.",
    ),
    (
        "The front door is **locked** and the garage door is *closed*.",
        "The front door is locked and the garage door is closed.",
    ),
    (
        "3 windows are open:\n- Kitchen\n- Bathroom\n- Office",
        "three windows are open: Kitchen. Bathroom. Office.",
    ),
    (
        "The washing machine finished **10 min** ago. The dryer has about 45 min left.",
        "The washing machine finished ten minutes ago. The dryer has about forty-five minutes"
        " left.",
    ),
    (
        "Your car is charging at 11 kW and will reach 80% by 6:30 AM.",
        "Your car is charging at eleven kilowatts and will reach eighty percent by six thirty A M.",
    ),
    (
        "The thermostat is set to **22 °C**, and the room is at 20.5 °C right now.",
        "The thermostat is set to twenty-two degrees Celsius, and the room is at twenty point"
        " five degrees Celsius right now.",
    ),
    # how-to
    (
        "To create an automation, go to **Settings > Automations & Scenes** and tap"
        " *Create automation*.",
        "To create an automation, go to Settings, Automations and Scenes and tap Create"
        " automation.",
    ),
    (
        "Open `/config/integrations` and search for **Zigbee**.",
        "Open config, integrations and search for Zigbee.",
    ),
    (
        "To restart, run `ha core restart` in the terminal. It takes about **1 minute**.",
        "To restart, run ha core restart in the terminal. It takes about one minute.",
    ),
    (
        "Here's an example:\n```yaml\nautomation:\n  - alias: Porch light\n    trigger:\n"
        "      - platform: sun\n        event: sunset\n```\nSave it and reload your automations.",
        "Here's an example: Code omitted. Save it and reload your automations.",
    ),
    (
        "For details, see [the automation documentation](https://www.home-assistant.io/docs/"
        "automation/).",
        "For details, see the automation documentation.",
    ),
    (
        "1. Hold the button on the hub for 5 s.\n2. Enter the code **4-2-7-1**.\n3. Wait until"
        " the light turns green.",
        "Hold the button on the hub for five seconds. Enter the code four two seven one. Wait"
        " until the light turns green.",
    ),
    (
        "A 50/50 split of the bill means you each pay **$42.50**.",
        "A fifty fifty split of the bill means you each pay forty-two dollars and fifty cents.",
    ),
    (
        "Visit https://www.home-assistant.io/blog for the release notes.",
        "Visit home assistant dot I O, blog for the release notes.",
    ),
    (
        "Send the logs to support@example.com and mention *version 2025.7*.",
        "Send the logs to support at example dot com and mention version two thousand"
        " twenty-five point seven.",
    ),
]

# Names of marks a listener must never hear in a reply (what espeak-ng says for them).
SYMBOL_NAMES = ("asterisk", "hash", "number sign", "slash", "https", "backtick", "underscore")
