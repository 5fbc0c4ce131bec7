"""docs/benchmarks.md holds one section per benchmark: a re-run replaces its section (benchmarks/_log.py)."""

import importlib.util
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"


def load_log():
    spec = importlib.util.spec_from_file_location("benchmarks_log", ROOT / "benchmarks" / "_log.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOC_BEFORE = """# Benchmarks

## Sampling throughput

old table

old reading

## Merge

merge table

## Findings

### Something

found
"""


def test_a_section_is_replaced_in_place_up_to_the_next_section():
    """The sampling section's heading, table and reading give way to the new text; the merge section and the
    findings are untouched, byte for byte."""
    new = "## Sampling throughput\n\nnew table\n"
    got = load_log().replace_section(DOC_BEFORE, "Sampling throughput", new)
    assert got == DOC_BEFORE.replace("old table\n\nold reading\n", "new table\n")


def test_a_new_benchmark_goes_before_the_findings_and_the_last_section_is_replaced_to_the_end():
    log = load_log()
    added = log.replace_section(DOC_BEFORE, "Coverage", "## Coverage\n\nfigures\n")
    assert added == DOC_BEFORE.replace("## Findings", "## Coverage\n\nfigures\n\n## Findings")
    no_findings = "# Benchmarks\n\n## Merge\n\nmerge table\n"
    assert log.replace_section(no_findings, "Merge", "## Merge\n\nnew\n") == "# Benchmarks\n\n## Merge\n\nnew\n"
    assert log.replace_section(no_findings, "Other", "## Other\n\nx\n") == no_findings + "\n## Other\n\nx\n"


def test_running_a_benchmark_twice_leaves_one_section_with_the_second_figure(tmp_path, monkeypatch):
    log = load_log()
    monkeypatch.setattr(log, "LOG", tmp_path / "benchmarks.md")
    log.LOG.write_text(DOC_BEFORE, encoding="utf-8")
    for seconds in ("1.0", "2.0"):
        log.write_section("Merge", ["| s |", "|---|", f"| {seconds} |"], "reading", command="python merge.py",
                          setting="2-core CPU")
    text = log.LOG.read_text(encoding="utf-8")
    expected = f"## Merge\n\n{date.today()}, 2-core CPU. Command: `python merge.py`\n\n| s |\n|---|\n| 2.0 |\n\nreading\n"
    assert text == DOC_BEFORE.replace("## Merge\n\nmerge table\n", expected)
    assert not list(tmp_path.glob("*.tmp"))


def test_the_benchmarks_doc_has_no_repeated_heading():
    headings = [line.strip() for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert len(headings) > 10, "the doc lost its sections"
    assert [h for h, n in Counter(headings).items() if n > 1] == []
