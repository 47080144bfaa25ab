"""HTML building blocks the console's pages share: escaping, empty states, tables."""

from __future__ import annotations

import re
from html import escape


def e(value: object) -> str:
    return escape(str(value), quote=True)


def empty(message: str) -> str:
    return f'<p class="empty">{e(message)}</p>'


def _plain(html_text: str) -> str:
    return re.sub(r"<[^>]+>", "", html_text).strip()


def table(headers: list[str], rows: list[list[str]], caption: str = "", cls: str = "") -> str:
    """A table; each cell carries its column's name (data-label), which narrow screens show beside the
    value when a `stack` table lays its rows out as cards."""
    head = "".join(f'<th scope="col">{header}</th>' for header in headers)
    labels = [e(_plain(header)) for header in headers]
    body = "".join(
        "<tr>"
        + "".join(f'<td data-label="{label}">{cell}</td>' for label, cell in zip(labels, row, strict=False))
        + "</tr>"
        for row in rows
    )
    cap = f"<caption>{e(caption)}</caption>" if caption else ""
    return (
        f'<div class="scroll"><table class="{cls}">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )
