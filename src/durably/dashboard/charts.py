"""Small inline SVG charts drawn from numbers only (so they are safe to embed as is)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

WIDTH, HEIGHT = 150, 30


def bars(counts: Sequence[int], label: str = "starts per minute") -> Markup:
    """Counts as vertical bars, oldest left; the tallest fills the height."""
    top = max(counts, default=0) or 1
    step = WIDTH / max(len(counts), 1)
    rects = []
    for i, count in enumerate(counts):
        height = max(int(count), 0) / top * (HEIGHT - 2)
        rects.append(
            f'<rect x="{i * step:.1f}" y="{HEIGHT - height - 1:.1f}" '
            f'width="{max(step - 1, 1):.1f}" height="{max(height, 0.5):.1f}">'
            f"<title>{int(count)}</title></rect>"
        )
    # The label is ours (never from the database) and escaped all the same; the rest is
    # numbers formatted here, so the markup is safe to embed as it is.
    title = Markup.escape(label)
    return Markup(  # noqa: S704
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="{title}">{"".join(rects)}</svg>'
    )
