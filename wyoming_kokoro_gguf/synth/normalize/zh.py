"""Mandarin Chinese: words, units and the forms of times and dates."""

from __future__ import annotations

from wyoming_kokoro_gguf.synth.normalize.core import (
    Lang,
    digits,
    hour_24,
    register,
    spell,
    unit_table,
)

_MONTHS = "一月 二月 三月 四月 五月 六月 七月 八月 九月 十月 十一月 十二月"


def _clock(h: int, m: int, half: str | None, zero: bool, language: str) -> str:
    h = hour_24(h, half)
    hour, mins = spell(h, language, feminine=True), spell(m, language)
    hour = "两" if h == 2 else hour
    return f"{hour}点" + (f"{'零' if m < 10 else ''}{mins}分" if m else "")


def _date(year: int | None, month: int, day: int, language: str) -> str:
    y = digits(str(year), language) + "年" if year is not None else ""
    return f"{y}{_MONTHS.split()[month - 1]}{spell(day, language)}日"


register(
    "zh",
    Lang(
        "点",
        "负",
        "百分之{n}",
        "{a}到{b}",
        _MONTHS,
        "星期一 星期二 星期三 星期四 星期五 星期六 星期日",
        {
            **{"°C": "{n}摄氏度", "°F": "{n}华氏度", "°": "{n}度", "%": "百分之{n}"},
            **unit_table(
                "W={n}瓦; kW={n}千瓦; kWh={n}千瓦时; km={n}公里; m={n}米; kg={n}公斤;"
                " km/h=每小时{n}公里; s={n}秒; min={n}分钟; h={n}小时"
            ),
        },
        {"¥": ("元", "元", "", ""), "￥": ("元", "元", "", "")},
        sep="",
        says={"dot": "点", "ip dot": "点"},
        clock=_clock,
        date=_date,
        decimal_point=True,
    ),
)
