"""`imm report`: one HTML page (and optionally Markdown tables) for one run or several seeds of one run.

    imm report RUN_DIR [RUN_DIR ...] [--arms NAME,...] [--out DIR] [--markdown FILE] [--overwrite]

One run's report goes to RUN_DIR/report/ unless --out says otherwise; several runs need --out. The
folder holds index.html and the figures beside it; it opens from disk, without a server or network.
`imm run` refreshes its run's summary after every iteration and its report at most once a minute
(`Refresher`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from imm.errors import UserError
from imm.layout import RunLayout
from imm.outputs import atomic_write_text, check_output_dir, check_output_file, first_line, output_dir
from imm.report.render import MARKDOWN_MARKER

KIND = "report"  # the kind of output folder (imm.outputs)
INDEX = "index.html"
TABLES = "results.md"  # the tables as Markdown, inside the report folder of several runs `imm run` made


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders of one experiment (seeds)")
    parser.add_argument("--arms", type=lambda text: tuple(p.strip() for p in text.split(",") if p.strip()),
                        default=(), metavar="NAME,...", help="report these arms only, read from every run folder "
                        "(e.g. the self_improve and imm arms of imm compare folders beside imm run folders)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="report folder (default: RUN_DIR/report for one run)")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the tables as Markdown to FILE")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report (--out) or Markdown file")


def main(args: argparse.Namespace) -> int:
    from imm.report.runs import load_runs

    runs = load_runs(list(args.runs), args.arms)
    own = RunLayout(runs[0].root).report
    out = args.out or (own if len(runs) == 1 else None)
    if out is None:
        raise UserError("several runs need --out DIR for their report, e.g. --out runs/default-seeds")
    inside_run = len(runs) == 1 and Path(out).resolve() == own.resolve()  # a run's own report is imm's to replace
    overwrite = args.overwrite or inside_run
    inputs = () if inside_run else [r.root for r in runs]
    check_output_dir(out, KIND, overwrite=overwrite, inputs=inputs)
    if args.markdown:
        check_output_file(args.markdown, is_report_markdown, overwrite=args.overwrite)
    write(runs, out, overwrite=overwrite, inputs=inputs, markdown=args.markdown)
    print(f"report: {Path(out) / INDEX}" + (f"; tables: {args.markdown}" if args.markdown else ""))
    return 0


def is_report_markdown(path: Path) -> bool:
    return first_line(path) == MARKDOWN_MARKER


def write(runs: list, out: Path, *, overwrite: bool, inputs=(), markdown: Path | None = None,
          tables: bool = False) -> None:
    """Build everything first, then write the folder whole (with `tables`, results.md in it) and the Markdown
    file atomically: the one writer of a report folder."""
    from imm.report.build import build
    from imm.report.render import to_html, to_markdown

    report = build(runs)
    page, text = to_html(report), to_markdown(report) if markdown or tables else None
    with output_dir(out, KIND, overwrite=overwrite, inputs=inputs) as tmp:
        for figure in (f for s in report.sections for f in s.figures):
            (tmp / figure.name).write_bytes(figure.png)
        (tmp / INDEX).write_text(page, encoding="utf-8")
        if tables:
            (tmp / TABLES).write_text(text, encoding="utf-8")
    if markdown:
        atomic_write_text(markdown, text)


def write_runs(run_dirs: list[Path], out: Path) -> Path:
    """The report of the seeds `imm run` (or `imm compare`) ran, together, with its tables: imm's to replace."""
    from imm.report.runs import load_runs

    write(load_runs(run_dirs), out, overwrite=True, inputs=run_dirs, tables=True)
    return out / INDEX


def refresh(run_dir: Path, *, page: bool = True) -> None:
    """Re-write a run's summary (and its report page with the figures, where `page`) mid-run; a failure is
    reported in one line and the run goes on."""
    from imm.report.runs import load_run
    from imm.report.summary import write_summary

    started = time.perf_counter()
    try:
        run = load_run(run_dir)
        write_summary(run.cfg)
        if page:
            write([run], RunLayout(run.root).report, overwrite=True)
    except Exception as err:  # noqa: BLE001  a report must never stop a long run
        print(f"report not refreshed ({type(err).__name__}: {err})", flush=True)
        return
    if page:
        print(f"report refreshed: {RunLayout(run.root).report / INDEX} ({time.perf_counter() - started:.1f}s)",
              flush=True)


class Refresher:
    """`imm run`'s refresh after every iteration: summary.csv each time, the report page (figures drawn
    anew, about 2.5 s on the built-in default) at most once per `every` seconds, and always at the end."""

    def __init__(self, run_dir: Path, every: float = 60.0):
        self.run_dir, self.every, self.last = run_dir, every, None

    def __call__(self, final: bool = False) -> None:
        page = final or self.last is None or time.monotonic() - self.last >= self.every
        refresh(self.run_dir, page=page)
        if page:
            self.last = time.monotonic()
