"""The dashboard's views: what each page shows, from the same services the API answers with, and its
charts, drawn as SVG on the server (no script, no asset from elsewhere)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html import escape

from litestar.plugins.jinja import JinjaTemplateEngine
from markupsafe import Markup

WIDTH, HEIGHT, PAD = 640, 180, 24


@dataclass(frozen=True)
class Point:
    label: str
    value: Decimal


def scale(values: Sequence[Decimal]) -> Decimal:
    top = max((abs(v) for v in values), default=Decimal(0))
    return top if top > 0 else Decimal(1)


def bar_chart(points: Sequence[Point], title: str) -> Markup:
    """Bars for `points`, each labelled with its exact value (the geometry is rounded pixels; the
    numbers shown are the exact decimal strings)."""
    if not points:
        return Markup(f'<p class="empty">No data for {escape(title)}.</p>')  # noqa: S704 (escaped)
    top = scale([p.value for p in points])
    step = (WIDTH - 2 * PAD) / len(points)
    bars = []
    for n, point in enumerate(points):
        height = int((HEIGHT - 2 * PAD) * (point.value / top)) if point.value > 0 else 0
        x, y = int(PAD + n * step), HEIGHT - PAD - height
        bars.append(
            f'<rect x="{x}" y="{y}" width="{max(int(step) - 4, 1)}" height="{height}">'
            f"<title>{escape(point.label)}: {escape(str(point.value))}</title></rect>"
        )
        if len(points) <= 16:
            short = point.label.rsplit("/", 1)[-1][:18]  # a model without its provider, a day as it is
            bars.append(f'<text x="{x}" y="{HEIGHT - 6}">{escape(short)}</text>')
    # Every text in it went through escape().
    return Markup(  # noqa: S704
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}">'
        f"<title>{escape(title)}</title>{''.join(bars)}</svg>"
    )


def line_chart(points: Sequence[Point], title: str) -> Markup:
    if len(points) < 2:
        return bar_chart(points, title)
    values = [p.value for p in points]
    low, high = min(values), max(values)
    span = (high - low) or Decimal(1)
    step = (WIDTH - 2 * PAD) / (len(points) - 1)
    coords = " ".join(
        f"{int(PAD + n * step)},{int(HEIGHT - PAD - (HEIGHT - 2 * PAD) * ((p.value - low) / span))}"
        for n, p in enumerate(points)
    )
    return Markup(  # noqa: S704 (every text escaped)
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}">'
        f'<title>{escape(title)}</title><polyline points="{coords}" />'
        f'<text x="{PAD}" y="14">{escape(str(high))}</text><text x="{PAD}" y="{HEIGHT - 6}">{escape(str(low))}</text>'
        "</svg>"
    )


def matches(query: str, *texts: str | None) -> bool:
    query = query.strip().lower()
    return not query or any(query in (text or "").lower() for text in texts)


def when(moment: datetime | None, otherwise: str = "") -> str:
    """A time as every page shows it, to the second (times are UTC throughout); `otherwise` for none."""
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else otherwise


def register_filters(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters["when"] = when
