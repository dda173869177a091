"""Bar charts as inline SVG, drawn on the server: no charting library, no script, nothing for the CSP to allow.

Each chart is a `<figure>` with a text alternative (a table of the same numbers follows it
in the page), so a screen reader gets the figures and not a picture of them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD = 600, 160, 28


def bar_chart(label: str, points: tuple[int, ...], starts: tuple[datetime, ...], bucket: timedelta, css: str) -> Markup:
    top = max(points, default=0) or 1
    step = (WIDTH - PAD) / max(len(points), 1)
    bars = []
    for i, (value, start) in enumerate(zip(points, starts, strict=True)):
        height = (HEIGHT - PAD) * value / top
        x, y = PAD + i * step + 1, HEIGHT - PAD - height
        when = f"{start:%H:%M}–{start + bucket:%H:%M}"
        bars.append(f'<rect class="bar {css}" x="{x:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{height:.1f}">'
                    f"<title>{escape(when)}: {value}</title></rect>")
    ticks = (f'<text x="2" y="12" class="tick">{top}</text><text x="2" y="{HEIGHT - PAD}" class="tick">0</text>'
             f'<text x="{PAD}" y="{HEIGHT - 8}" class="tick">{starts[0]:%H:%M}</text>'
             f'<text x="{WIDTH - 40}" y="{HEIGHT - 8}" class="tick">now</text>') if starts else ""
    svg = (f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}: {sum(points)} in all" '
           f'class="chart" preserveAspectRatio="none">'
           f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH}" y2="{HEIGHT - PAD}" class="axis"/>{"".join(bars)}{ticks}</svg>')
    return Markup(f'<figure class="chart-figure"><figcaption>{escape(label)}: <strong>{sum(points)}</strong></figcaption>'
                  f"{svg}</figure>")
