"""Reports: the run's `summary.csv` and printed table (`summary`), and `imm report`'s HTML and Markdown
(`build`): accuracy, collapse, layer and forgetting figures with their intervals, over one run or several seeds."""

from imm.report.summary import (  # noqa: F401  the summary is what most callers need
    HEADER, SummaryRow, collect, format_table, read_summary, write_summary)
from imm.report.cli import INDEX, KIND, Refresher, refresh, write_runs  # noqa: F401,E402  what `imm run` calls
