"""The statement written out: Markdown, HTML (a whole page, or a fragment a web page
embeds) and JSON (the data itself)."""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Iterator, Sequence

from pacsnode.conformance.blocks import Block, Bullets, Section, Table
from pacsnode.conformance.document import document
from pacsnode.conformance.model import Statement

FORMATS = ("md", "html", "json")
MEDIA_TYPES = {"md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8"}


def render(statement: Statement, form: str) -> str:
    if form == "json":
        return as_json(statement)
    if form == "md":
        return markdown(statement)
    if form == "html":
        return html_page(statement)
    raise ValueError(f"unknown format {form!r}: one of {', '.join(FORMATS)}")


def as_json(statement: Statement) -> str:
    return json.dumps(dataclasses.asdict(statement), indent=1)


def _title(statement: Statement) -> str:
    product = f"{statement.product} {statement.version}"
    return f"DICOM Conformance Statement: {product} ({statement.ae_title})"


# --- Markdown ----------------------------------------------------------------------------


def markdown(statement: Statement) -> str:
    lines = [f"# {_title(statement)}", ""]
    for number, section in enumerate(document(statement)):
        lines += _md_section(section, [number] if number else [], 2)
    return "\n".join(lines).rstrip() + "\n"


def _md_section(section: Section, numbers: list[int], depth: int) -> list[str]:
    label = ".".join(str(n) for n in numbers)
    heading = f"{label} {section.title}" if label else section.title
    lines = ["#" * min(depth, 6) + " " + heading, ""]
    subsections = 0
    for block in section.blocks:
        if isinstance(block, Section):
            subsections += 1
            lines += _md_section(block, [*numbers, subsections] if numbers else [], depth + 1)
        else:
            lines += _md_block(block)
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or " "


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Table):
        lines = [f"*{block.caption}*", ""] if block.caption else []
        lines.append("| " + " | ".join(block.header) + " |")
        lines.append("|" + "---|" * len(block.header))
        lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in block.rows]
        return [*lines, ""]
    if isinstance(block, Bullets):
        return [*(f"- {item}" for item in block.items), ""]
    assert isinstance(block, str)
    return [block, ""]


# --- HTML --------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #bbb; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
caption { text-align: left; font-style: italic; }
"""


def html_page(statement: Statement) -> str:
    """A whole page, for a browser or a file."""
    title = html.escape(_title(statement))
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"{html_fragment(statement)}</body>\n</html>\n"
    )


def html_fragment(statement: Statement) -> str:
    """The statement as an ``<article>``: what a page of the web UI embeds."""
    parts = [f'<article class="conformance">\n<h1>{html.escape(_title(statement))}</h1>\n']
    for number, section in enumerate(document(statement)):
        parts += _html_section(section, [number] if number else [], 2)
    parts.append("</article>\n")
    return "".join(parts)


def _html_section(section: Section, numbers: list[int], depth: int) -> Iterator[str]:
    label = ".".join(str(n) for n in numbers)
    anchor = "s-" + (label.replace(".", "-") if label else "overview")
    heading = html.escape(f"{label} {section.title}" if label else section.title)
    level = min(depth, 6)
    yield f'<section id="{anchor}">\n<h{level}>{heading}</h{level}>\n'
    subsections = 0
    for block in section.blocks:
        if isinstance(block, Section):
            subsections += 1
            yield from _html_section(block, [*numbers, subsections] if numbers else [], depth + 1)
        else:
            yield _html_block(block)
    yield "</section>\n"


def _row(cells: Sequence[str], tag: str) -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in cells) + "</tr>\n"


def _html_block(block: Block) -> str:
    if isinstance(block, Table):
        caption = f"<caption>{html.escape(block.caption)}</caption>\n" if block.caption else ""
        head = _row(block.header, "th")
        body = "".join(_row(row, "td") for row in block.rows)
        return f"<table>\n{caption}<thead>{head}</thead>\n<tbody>\n{body}</tbody>\n</table>\n"
    if isinstance(block, Bullets):
        items = "".join(f"<li>{html.escape(item)}</li>\n" for item in block.items)
        return f"<ul>\n{items}</ul>\n"
    assert isinstance(block, str)
    return f"<p>{html.escape(block)}</p>\n"
