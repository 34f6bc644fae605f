"""The console's hits-per-day chart: an SVG drawn here from the stored daily counts (stats.py), so the page
loads no chart library and nothing from outside the bot. It scales to its card's width (viewBox), and each
bar names its day and counts (a <title>, shown on hover or long press).
"""

from __future__ import annotations

from datetime import date

from ..i18n import Lang
from ..stats import Counts
from .html import Html, render

WIDTH, HEIGHT = 320, 112
# The plot area inside the viewBox: room on the left for the scale, below for the first and last day.
LEFT, RIGHT, TOP, BOTTOM = 24, 316, 8, 92
GAP = 1.5


def _day(day: date) -> str:
    return day.strftime("%m-%d")


def hits_chart(days: list[tuple[date, Counts]], words: Lang) -> Html:
    """Bars of hits per day (oldest left, today right), with the day's images checked in each bar's title;
    only a caption when there was no hit."""
    hits = [counts.hits for _, counts in days]
    total = sum(hits)
    if not total:  # an empty plot says nothing more than its caption
        return render('<figure class="chart"><figcaption>$summary</figcaption></figure>',
                      summary=words("chart", "no_hits", days=len(days)))  # fmt: skip
    peak, slot = max(hits), (RIGHT - LEFT) / len(days)
    bars = []
    for index, (day, counts) in enumerate(days):
        height = (BOTTOM - TOP) * counts.hits / peak
        bars.append(render(
            '<rect x="$x" y="$y" width="$width" height="$height" class="$kind"><title>$title</title></rect>',
            x=f"{LEFT + index * slot + GAP / 2:.1f}", y=f"{BOTTOM - height:.1f}",
            width=f"{max(slot - GAP, 1):.1f}", height=f"{height:.1f}",
            kind="bar today" if index == len(days) - 1 else "bar",
            title=words("chart", "bar", day=_day(day), hits=counts.hits, checked=counts.checked),
        ))  # fmt: skip
    summary = words("chart", "summary", days=len(days), total=total, peak=peak)
    first, last = _day(days[0][0]), _day(days[-1][0])
    return render(
        '<figure class="chart"><svg viewBox="0 0 $width $height" role="img" aria-label="$summary">'
        '<line x1="$left" y1="$bottom" x2="$right" y2="$bottom" class="axis"/>'
        '<text x="$scale_x" y="$top_text" class="scale">$peak</text>'
        '<text x="$scale_x" y="$bottom" class="scale">0</text>'
        "$bars"
        '<text x="$left" y="$label_y" class="day">$first</text>'
        '<text x="$right" y="$label_y" class="day end">$last</text>'
        "</svg><figcaption>$summary</figcaption></figure>",
        width=WIDTH, height=HEIGHT, left=LEFT, right=RIGHT, bottom=BOTTOM, scale_x=LEFT - 4, top_text=TOP + 8,
        label_y=BOTTOM + 14, peak=peak, bars=Html("".join(bars)), first=first, last=last, summary=summary,
    )  # fmt: skip
