"""A report as one HTML page (figures as PNG files beside it; no script, no network) or as Markdown."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

from imm.report.document import Cell, Report, Section, Table

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; color: #111; max-width: 1180px; margin: 1.5em auto; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
td.text { text-align: left; white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 12px; max-width: 30em; }
.note { color: #444; font-size: 12px; margin-top: -0.4em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #333; font-size: 13px; }
nav a { margin-right: 1em; }
.right { color: #006d2c; } .wrong { color: #a50f15; }
@media print { nav { display: none; } h2 { break-before: auto; } figure { break-inside: avoid; } }
"""


def inline(text: str) -> str:
    """Escaped text with **bold** kept."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(html_cell(c) for c in row) + "</tr>" for row in table.rows)
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return f"<table><caption>{html.escape(table.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def html_cell(cell: Cell) -> str:
    attribute = f' data-key="{html.escape(cell.key)}"' if cell.key else ""
    wide = ' class="text"' if "\n" in cell.text or len(cell.text) > 80 else ""
    return f"<td{attribute}{wide}>{html.escape(cell.text)}</td>"


def html_example(example: dict) -> str:
    header = "".join(f"<th>{html.escape(name)}</th>" for name in example["answers"])
    cells = "".join(answer_cell(row) for row in example["answers"].values())
    return (f"<h4>{html.escape(example['task'])}, problem {html.escape(str(example['id']))} "
            f"(gold answer {html.escape(str(example['gold']))})</h4><table><thead><tr>{header}</tr></thead>"
            f"<tbody><tr>{cells}</tr></tbody></table>")


def answer_cell(row: dict | None) -> str:
    if row is None:
        return "<td>-</td>"
    verdict = '<span class="right">✓ right</span>' if row["correct"] else '<span class="wrong">✗ wrong</span>'
    return f'<td class="text">{verdict} (answer: {html.escape(str(row["extracted"]))})\n{html.escape(row["completion"])}</td>'


def html_section(section: Section) -> str:
    parts = [f'<section id="{html.escape(section.anchor)}"><h2>{html.escape(section.title)}</h2>']
    parts += [f"<p>{inline(p)}</p>" for p in section.paragraphs]
    if section.bullets:
        parts.append("<ul>" + "".join(f"<li>{inline(b)}</li>" for b in section.bullets) + "</ul>")
    parts += [f'<figure><img src="{html.escape(quote(f.name))}" alt="{html.escape(f.caption)}"><figcaption>{html.escape(f.caption)}'
              f"</figcaption></figure>" for f in section.figures]
    parts += [html_table(t) for t in section.tables]
    if section.examples:
        parts.append(f"<p>Prompt of the first example:</p><pre>{html.escape(section.examples[0]['prompt'])}</pre>")
        parts += [html_example(e) for e in section.examples]
    return "\n".join(parts) + "</section>"


def to_html(report: Report) -> str:
    nav = " ".join(f'<a href="#{html.escape(quote(s.anchor))}">{html.escape(s.title)}</a>' for s in report.sections)
    runs = ", ".join(html.escape(r) for r in report.runs)
    body = "\n".join(html_section(s) for s in report.sections)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(report.title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(report.title)}</h1><p>Runs: {runs}</p>"
            f"<nav>{nav}</nav>\n{body}\n</body></html>\n")


# The first line of every Markdown file imm writes: the mark that lets --overwrite replace the file.
MARKDOWN_MARKER = "<!-- written by imm report: replaced by `imm report --overwrite` only while this line heads it -->"


def md_text(text: str) -> str:
    """Text from the data as Markdown prose: HTML in it is shown, never run (`<`, `>`, `&` as entities)."""
    return html.escape(str(text), quote=False)


def md_escape(text: str) -> str:
    """Text from the data as one Markdown table cell."""
    return md_text(text).replace("|", "\\|").replace("\n", " ")


def md_table(table: Table) -> str:
    lines = [f"**{md_escape(table.title)}**", "", "| " + " | ".join(md_escape(h) for h in table.header) + " |",
             "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(md_escape(c.text) for c in row) + " |" for row in table.rows]
    return "\n".join(lines + ([f"\n{md_text(table.note)}"] if table.note else []))


def md_example(example: dict) -> str:
    answers = "; ".join(f"{name}: {'-' if row is None else ('✓ ' if row['correct'] else '✗ ') + str(row['extracted'])}"
                        for name, row in example["answers"].items())
    return md_text(f"- {example['task']} problem {example['id']} (gold {example['gold']}): {answers}")


def md_section(section: Section) -> str:
    parts = [f"## {md_text(section.title)}"]
    parts += [md_text(p) for p in section.paragraphs]
    if section.bullets:
        parts.append("\n".join(f"- {md_text(b)}" for b in section.bullets))
    parts += [md_table(t) for t in section.tables]
    if section.examples:
        parts.append("\n".join(md_example(e) for e in section.examples))
    return "\n\n".join(parts)


def to_markdown(report: Report) -> str:
    return "\n\n".join([MARKDOWN_MARKER + f"\n# {md_text(report.title)}", "Runs: " + ", ".join(f"`{r.replace('`', '')}`" for r in report.runs),
                        *(md_section(s) for s in report.sections)]) + "\n"
