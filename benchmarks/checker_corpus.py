"""The labelled answer corpus: build it from public gold answers, and score the checker against it.

    .venv/bin/python benchmarks/checker_corpus.py --build        # (re)writes tests/data/checker_corpus.jsonl
    .venv/bin/python benchmarks/checker_corpus.py                # agreement / false accepts / rejects per class
    .venv/bin/python benchmarks/checker_corpus.py --append-docs  # and writes its section of docs/benchmarks.md

Each row is a model-style completion, the gold answer, the task whose checker judges it, the right
verdict (`label`), the class of answer form it tests and `why` the label is right. Rows are derived by
rule, never by running the checker: GSM8K test golds (every 7th of ../shared/data/gsm8k/test.jsonl)
and Minerva MATH golds (../shared/data/qwen25math_eval/minerva_math) rewritten into equivalent forms
(label true: the same value written another way) and near misses (label false: another value, a
second claim, more mathematics glued on), plus hand-written MATH-style golds and hostile answers for
every class of issue 13. Building needs the offline data; scoring needs only the committed corpus.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

from _log import write_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
CORPUS = ROOT / "tests" / "data" / "checker_corpus.jsonl"
# The classes of issues 13 and 25: the corpus test requires zero false accepts on each.
ISSUE_CLASSES = ("surd", "glued_letters", "approximation", "prose", "sequence", "escaped_dollar",
                 "second_claim", "pair", "interval", "matrix", "tuple", "thousands", "text_case")


def row(cls: str, task: str, completion: str, gold: str, label: bool, why: str, metric: str = "strict-match") -> dict:
    return {"class": cls, "task": task, "metric": metric, "completion": completion, "gold": gold,
            "label": label, "why": why}


def gsm8k_rows(gold: str) -> list[dict]:
    """Rewrites of one GSM8K gold (an integer or a decimal, as `#### N` writes it)."""
    g = Fraction(gold)
    near = str(g + 1) if g.denominator == 1 else gold + "1"
    whole = g.denominator == 1
    rows = [
        row("equivalent", "gsm8k", f"So that is it. The answer is {gold}.", gold, True, "the gold as written"),
        row("equivalent", "gsm8k", f"The answer is **{gold}**.", gold, True, "markdown bold does not change the value"),
        row("equivalent", "gsm8k", f"The answer is {gold} dollars.", gold, True, "a unit word after the value"),
        row("escaped_dollar", "gsm8k", f"The answer is \\${gold}.", gold, True, "'\\$' is LaTeX for a dollar sign"),
        row("near_miss", "gsm8k", f"The answer is {near}.", gold, False, "another value"),
        row("glued_letters", "gsm8k", f"The answer is {gold}x.", gold, False, f"{gold}x is {gold} times x, not {gold}"),
        row("surd", "gsm8k", f"The answer is {gold}√2.", gold, False, f"{gold}√2 is {gold} times √2"),
        row("second_claim", "gsm8k", f"The answer is {gold} or {near}.", gold, False, "two answers: a hedge, not the answer"),
        row("prose", "gsm8k", f"The answer is not {gold}.", gold, False, "the answer denies the gold"),
        row("prose", "gsm8k", f"I cannot solve this; the problem mentions {gold} apples.", gold, False,
            "a refusal: strict-match finds no stated answer"),
        row("near_miss", "gsm8k", "The answer is 4. Wait, no. " + f"The answer is {near}.", gold, False,
            "the last statement counts, and it is another value"),
        row("equivalent", "gsm8k", f"{gold} is the total.", gold, True,
            "flexible-extract reads the last number, which is the gold", metric="flexible-extract"),
        row("glued_letters", "gsm8k", f"So the total is {gold}k", gold, False,
            f"flexible-extract reads '{gold}k', which is not the number {gold}", metric="flexible-extract"),
    ]
    if whole:
        rows += [
            row("escaped_dollar", "gsm8k", f"The answer is \\${gold}.00.", gold, True, "'\\$N.00' is N dollars"),
            row("escaped_dollar", "gsm8k", f"The answer is $\\boxed{{\\${gold}}}$.", gold, True, "a boxed escaped dollar"),
            row("sequence", "gsm8k", f"The answer is {g - 2}, {g - 1}, {gold}.", gold, False,
                "a sequence ending in the gold is not one answer"),
        ]
    if whole and abs(g) >= 1000:
        rows.append(row("equivalent", "gsm8k", f"The answer is {int(g):,}.", gold, True, "thousands commas"))
    return rows


def minerva_rows(gold: str, value: Fraction | None) -> list[dict]:
    """Rewrites of one Minerva gold: numeric golds get tolerance rows, every gold equivalent spellings."""
    rows = [
        row("equivalent", "minerva_math", f"Thus $\\boxed{{{gold}}}$.", gold, True, "the gold as written, boxed"),
        row("equivalent", "minerva_math", f"The answer is ${gold}$.", gold, True, "the gold stated in math mode"),
        row("equivalent", "minerva_math", f"\\boxed{{ {gold.replace('frac', 'dfrac')} }}", gold, True,
            "\\dfrac and spaces do not change the value"),
    ]
    if value is not None and value != 0:
        close, far = value * Fraction(100003, 100000), value * Fraction(101, 100)
        rows += [
            row("tolerance", "minerva_math", f"\\boxed{{{_sci(close)}}}", gold, True,
                "within the task's relative 1e-4 (3e-5 off): a measured quantity"),
            row("near_miss", "minerva_math", f"\\boxed{{{_sci(far)}}}", gold, False, "1% off: outside 1e-4"),
        ]
    if value is not None and value != 0 and gold[-1].isdigit():
        rows += [
            row("glued_letters", "minerva_math", f"\\boxed{{{gold}i}}", gold, False, "an imaginary number"),
            row("prose", "minerva_math", f"\\boxed{{\\text{{cannot be determined, maybe }} {gold}}}", gold, False,
                "a hedge containing the gold is not an answer"),
        ]
    return rows


def _sci(value: Fraction) -> str:
    """A value written with 8 significant digits in 'a \\times 10^{b}' form."""
    mantissa, exponent = f"{float(value):.7e}".split("e")
    return f"{mantissa} \\times 10^{{{int(exponent)}}}"


THREE_DIGIT_GROUPS = ("the gold's comma groups are all three digits, so against one number it is that number "
                      "(MATH writes 771,400 so); against a pair it would be a pair")

# Hand-written MATH-style golds in the forms MATH writes them, each with equivalent spellings (true)
# and near misses (false). `why` says what the rewrite did.
MATH_CASES = [
    # gold, [(class, predicted, label, why)]
    ("6", [("surd", "6\\sqrt{2}", False, "6√2 ≈ 8.49"), ("surd", "6√2", False, "unicode root: 6√2 ≈ 8.49"),
           ("surd", "6 * sqrt(2)", False, "plain-text root: 6√2"), ("surd", "6\\sqrt2", False, "6√2"),
           ("equivalent", "6.0", True, "6.0 = 6"), ("equivalent", "\\frac{12}{2}", True, "12/2 = 6"),
           ("glued_letters", "6x", False, "6 times x")]),
    ("3\\sqrt{5}", [("surd", "3√5", True, "unicode root of the same surd"), ("surd", "3 sqrt(5)", True, "plain-text root"),
                    ("surd", "\\sqrt{45}", True, "√45 = 3√5"), ("surd", "3", False, "the root dropped"),
                    ("surd", "3\\sqrt{6}", False, "another radicand"), ("approximation", "6.708204", False,
                                                                        "6-decimal approximation of an exact answer")]),
    ("\\sqrt{65}", [("approximation", "8.062258", False, "√65 = 8.0622577..., rounded: not exact"),
                    ("approximation", "8.06", False, "rounded"), ("surd", "√65", True, "unicode root"),
                    ("surd", "\\sqrt{65}", True, "as written"), ("surd", "sqrt(65)", True, "plain-text root")]),
    ("2\\pi", [("approximation", "6.283185", False, "2π rounded to 6 decimals"), ("approximation", "6.28", False, "rounded"),
               ("equivalent", "2π", True, "unicode π"), ("equivalent", "\\pi \\cdot 2", True, "commuted product"),
               ("near_miss", "\\pi", False, "half of it")]),
    ("\\frac{\\pi}{4}", [("approximation", "0.785398", False, "π/4 rounded"), ("equivalent", "\\dfrac{\\pi}{4}", True, "\\dfrac"),
                         ("equivalent", "\\frac{1}{4}\\pi", True, "the same product"), ("equivalent", "π/4", True, "plain text")]),
    ("\\frac{1}{3}", [("approximation", "0.333333", False, "1/3 rounded to 6 decimals"), ("approximation", "0.33", False, "rounded"),
                      ("equivalent", "1/3", True, "plain fraction"), ("equivalent", "\\frac{2}{6}", True, "unreduced")]),
    ("0.0625", [("near_miss", "0.06251", False, "exact decimal gold: 0.06251 is another value"),
                ("equivalent", "\\frac{1}{16}", True, "1/16 = 0.0625 exactly"), ("equivalent", "0.06250", True, "trailing zero")]),
    ("4", [("glued_letters", "4i", False, "4i is imaginary"), ("glued_letters", "4{cm}", True, "4 with a unit in braces"),
           ("glued_letters", "4\\text{ cm}", True, "4 with a \\text unit"), ("glued_letters", "4 \\mbox{ inches}", True, "4 with a unit"),
           ("glued_letters", "4n", False, "4 times n"), ("glued_letters", "4cm", True, "a glued unit abbreviation")]),
    ("-7", [("glued_letters", "-7k", False, "-7 times k"), ("equivalent", "−7", True, "unicode minus"),
            ("equivalent", "-7.0", True, "-7.0 = -7"), ("near_miss", "7", False, "sign lost")]),
    ("120", [("glued_letters", "120x", False, "120 times x"), ("glued_letters", "120^\\circ", True, "degrees"),
             ("glued_letters", "120 \\text{ degrees}", True, "degrees in words"), ("equivalent", "x = 120", True, "an assignment of the value")]),
    ("36", [("sequence", "9, 18, 27, 36, \\ldots", False, "a sequence ending in the gold"),
            ("sequence", "9, 18, 27, 36, ...", False, "a sequence, plain dots"), ("sequence", "36, 72", False, "two answers"),
            ("prose", "\\text{I cannot determine this, but 36 appears}", False, "a refusal containing the gold"),
            ("prose", "\\text{approximately } 36", False, "a hedge"), ("prose", "36 \\text{ or } 37", False, "two claims")]),
    ("44", [("escaped_dollar", "\\$44.00", True, "$44.00 = 44"), ("escaped_dollar", "\\$44", True, "$44"),
            ("escaped_dollar", "\\$45", False, "another value"), ("escaped_dollar", "44\\$", True, "dollar sign after")]),
    ("70,110", [("thousands", "70110", True, THREE_DIGIT_GROUPS), ("pair", "110, 70", True, "the pair in another order"),
                ("pair", "70, 110", True, "the pair"), ("pair", "70", False, "one of the two"), ("pair", "70, 110, 150", False, "a third value")]),
    ("-2,3", [("pair", "3,-2", True, "the same solutions"), ("pair", "-23", False, "one number"),
              ("pair", "x = -2, x = 3", True, "the same two solutions, written as equations")]),
    ("771,400", [("thousands", "771400", True, THREE_DIGIT_GROUPS), ("thousands", "771401", False, "another value"),
                 ("thousands", "77140", False, "a digit lost")]),
    ("9,240", [("thousands", "9240", True, THREE_DIGIT_GROUPS), ("thousands", "9{,}240", True, "thousands comma in braces"),
               ("thousands", "9.240", False, "a decimal point is not a thousands comma")]),
    ("\\begin{pmatrix}6\\\\3\\\\0\\end{pmatrix}", [
        ("matrix", "\\begin{pmatrix} 6 \\\\ 3 \\\\ 0 \\end{pmatrix}", True, "spacing"),
        ("matrix", "\\begin{pmatrix} 6 \\\\ -3 \\\\ 0 \\end{pmatrix}", False, "one sign flipped")]),
    ("\\text{Evelyn}", [("text_case", "evelyn", True, "the same name, lower case"),
                        ("text_case", "\\text{Evelynn}", False, "another spelling")]),
    ("10{,}080", [("equivalent", "10080", True, "thousands comma in braces"), ("equivalent", "10,080", True, "plain thousands comma")]),
    ("(-36,104]", [("interval", "[-36,104]", False, "a closed end where the gold is open"),
                   ("interval", "(-36, 104]", True, "spacing"), ("interval", "(-36,104)", False, "an open end where the gold is closed"),
                   ("interval", "\\left(-36,104\\right]", True, "\\left/\\right")]),
    ("[-36,104]", [("interval", "(-36,104]", False, "an open end where the gold is closed")]),
    ("[2,5)", [("interval", "[2,5]", False, "closed at 5"), ("interval", "[2, 5)", True, "spacing"), ("interval", "(2,5)", False, "open at 2")]),
    ("(-\\infty,3)\\cup(3,\\infty)", [("interval", "(-\\infty,3]\\cup(3,\\infty)", False, "3 included"),
                                       ("interval", "(-∞,3)∪(3,∞)", True, "unicode ∞ and ∪")]),
    ("\\frac{\\sqrt{3}}{2}", [("approximation", "0.866025", False, "√3/2 rounded"), ("equivalent", "\\frac{1}{2}\\sqrt{3}", True, "the same product"),
                              ("surd", "√3/2", True, "plain text"), ("surd", "\\frac{3}{2}", False, "root dropped")]),
    ("\\text{Monday}", [("prose", "Monday", True, "the word itself"), ("prose", "\\text{Tuesday}", False, "another day")]),
    ("5", [("prose", "\\text{no solution}", False, "a refusal"), ("prose", "\\text{The answer is 5 or 6}", False, "two claims"),
           ("prose", "5 \\text{ is not possible}", False, "denies the gold")]),
    ("18", [("second_claim", "18 \\text{ or } 20", False, "two answers"), ("second_claim", "18, 20", False, "two answers")]),
]


def math_style_rows(a: int, b: int) -> list[dict]:
    """MATH-style golds built from two GSM8K values 0 < a < b (a not a square): surds, multiples of π,
    pairs and intervals, each with an equivalent spelling and the near misses of issue 13."""
    import math

    boxed = lambda x: f"So the final answer is $\\boxed{{{x}}}$."  # noqa: E731
    root, pi = f"{math.sqrt(a):.6f}", f"{a * math.pi:.6f}"
    return [
        row("surd", "math", boxed(f"{b}√{a}"), f"{b}\\sqrt{{{a}}}", True, "unicode root of the same surd"),
        row("surd", "math", boxed(f"{b} * sqrt({a})"), f"{b}\\sqrt{{{a}}}", True, "plain-text root of the same surd"),
        row("surd", "math", boxed(f"{b}√{a}"), str(b), False, f"{b}√{a} is not {b}"),
        row("surd", "math", boxed(f"{b} sqrt({a})"), str(b), False, f"{b}√{a} is not {b}"),
        row("approximation", "math", boxed(root), f"\\sqrt{{{a}}}", False, f"√{a} rounded to 6 decimals: not exact"),
        row("approximation", "math", boxed(pi), f"{a}\\pi", False, f"{a}π rounded to 6 decimals: not exact"),
        row("approximation", "math", boxed(f"{a}π"), f"{a}\\pi", True, "unicode π"),
        row("pair", "math", boxed(f"{b}, {a}"), f"{a},{b}", True, "the same two answers in another order"),
        row("thousands", "math", boxed(f"{a}{b}"), f"{a},{b}", True, THREE_DIGIT_GROUPS) if len(str(b)) == 3 else
        row("pair", "math", boxed(f"{a}{b}"), f"{a},{b}", False, "one number is not the pair"),
        row("pair", "math", boxed(str(a)), f"{a},{b}", False, "one of the two answers"),
        row("interval", "math", boxed(f"[-{a},{b}]"), f"(-{a},{b}]", False, "closed at the left where the gold is open"),
        row("interval", "math", boxed(f"(-{a},{b})"), f"(-{a},{b}]", False, "open at the right where the gold is closed"),
        row("interval", "math", boxed(f"\\left(-{a}, {b}\\right]"), f"(-{a},{b}]", True, "the same interval"),
        row("glued_letters", "math", boxed(f"{b}i"), str(b), False, f"{b}i is imaginary"),
        row("glued_letters", "math", boxed(f"{b}{{cm}}"), str(b), True, f"{b} with a unit in braces"),
    ]


def structure_rows(a: int, b: int, c: int) -> list[dict]:
    """Issue 25's classes from three distinct GSM8K values: a column vector, a 2×2 matrix and a triple, each in
    another layout (true) and with one entry changed, moved or missing (false)."""
    boxed = lambda x: f"So the final answer is $\\boxed{{{x}}}$."  # noqa: E731
    column, matrix = f"\\begin{{pmatrix}}{a}\\\\{b}\\\\{c}\\end{{pmatrix}}", f"\\begin{{pmatrix}}{a}&{b}\\\\{c}&-{a}\\end{{pmatrix}}"
    return [
        row("matrix", "math", boxed(f"\\begin{{pmatrix}} {a} \\\\ {b} \\\\ {c} \\end{{pmatrix}}"), column, True, "spacing"),
        row("matrix", "math", boxed(f"\\begin{{bmatrix}}{a}\\\\ {b}\\\\ {c}\\end{{bmatrix}}"), column, True, "bmatrix: the same vector"),
        row("matrix", "math", boxed(f"\\begin{{pmatrix}} {a} \\\\ -{b} \\\\ {c} \\end{{pmatrix}}"), column, False, "one sign flipped"),
        row("matrix", "math", boxed(f"\\begin{{pmatrix}}{b}\\\\{a}\\\\{c}\\end{{pmatrix}}"), column, False, "two entries swapped"),
        row("matrix", "math", boxed(f"\\begin{{pmatrix}}{a}&{b}&{c}\\end{{pmatrix}}"), column, False, "a row, not a column"),
        row("matrix", "math", boxed(f"\\begin{{pmatrix}}{a}\\\\{b}\\end{{pmatrix}}"), column, False, "an entry missing"),
        row("matrix", "math", boxed(f"\\left(\\begin{{array}}{{cc}} {a} & {b} \\\\ {c} & -{a} \\end{{array}}\\right)"), matrix, True,
            "an array in parentheses: the same matrix"),
        row("matrix", "math", boxed(f"\\begin{{pmatrix}} {a} & {b} \\\\ {c} & {a} \\end{{pmatrix}}"), matrix, False, "one sign flipped"),
        row("matrix", "math", boxed(f"\\begin{{pmatrix}}{a}&{c}\\\\{b}&-{a}\\end{{pmatrix}}"), matrix, False, "transposed"),
        row("matrix", "math", boxed(f"\\begin{{pmatrix}}\\dfrac{{{2 * a}}}{{2}}&{b}\\\\{c}&-{a}\\end{{pmatrix}}"), matrix, True,
            f"{2 * a}/2 = {a}"),
        row("tuple", "math", boxed(f"\\left( {a}, {b}, {c} \\right)"), f"({a},{b},{c})", True, "spacing and \\left/\\right"),
        row("tuple", "math", boxed(f"({a}, -{b}, {c})"), f"({a},{b},{c})", False, "one sign flipped"),
        row("tuple", "math", boxed(f"({b}, {a}, {c})"), f"({a},{b},{c})", False, "two entries swapped: a tuple is ordered"),
        row("tuple", "math", boxed(f"({a}, {b})"), f"({a},{b},{c})", False, "an entry missing"),
    ]


def thousands_rows(gold: int) -> list[dict]:
    """A value of at least 1,000 written as MATH writes it, '9,240': the plain number is it, a near one is not."""
    written = f"{gold:,}"
    return [
        row("thousands", "math", f"The answer is $\\boxed{{{gold}}}$.", written, True, THREE_DIGIT_GROUPS),
        row("thousands", "math", f"The answer is $\\boxed{{{gold + 1}}}$.", written, False, "another value"),
        row("thousands", "math", f"The answer is $\\boxed{{{str(gold)[:-1]}}}$.", written, False, "a digit lost"),
    ]


TEXT_ANSWERS = ("Evelyn", "Monday", "east", "Tuesday", "Bob", "Saturday", "Alice", "north", "Ravi", "December")


def text_case_rows(word: str, other: str) -> list[dict]:
    """A `\\text{}` gold against the same word in another case (true) and another word (false)."""
    gold = f"\\text{{{word}}}"
    return [
        row("text_case", "math", f"The answer is $\\boxed{{{word.lower()}}}$.", gold, True, "the same word, lower case"),
        row("text_case", "math", f"The answer is $\\boxed{{\\text{{{word.upper()}}}}}$.", gold, True, "the same word, upper case"),
        row("text_case", "math", f"The answer is $\\boxed{{{other.lower()}}}$.", gold, False, "another word"),
        row("text_case", "math", f"The answer is $\\boxed{{\\text{{{word[:-1]}}}}}$.", gold, False, "the word without its last letter"),
    ]


def math_rows() -> list[dict]:
    rows = []
    for gold, cases in MATH_CASES:
        for cls, predicted, label, why in cases:
            rows.append(row(cls, "math", f"Therefore the answer is $\\boxed{{{predicted}}}$.", gold, label, why))
        rows.append(row("equivalent", "math", f"The answer is ${gold}$.", gold, True, "the gold as written"))
    rows += [
        row("second_claim", "math", "The answer is 18 or 20.", "18", False, "two answers"),
        row("prose", "math", "I cannot determine this exactly.", "5", False, "no stated answer"),
        row("prose", "math", "The answer is not 5. Maybe 6.", "5", False, "denies the gold"),
    ]
    return rows


def build() -> list[dict]:
    if not DATA.is_dir():
        raise SystemExit(f"offline data not found at {DATA}; building the corpus needs it (scoring does not)")
    gsm_golds = []
    with open(DATA / "gsm8k" / "test.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i % 7 == 0:
                gsm_golds.append(json.loads(line)["answer"].rpartition("####")[2].strip().replace(",", ""))
    sys.path.insert(0, str(ROOT / "src"))
    from imm.tasks.registry import get_task
    from imm.verify import parse_number

    minerva = get_task(f"minerva_math={DATA / 'qwen25math_eval' / 'minerva_math'}").problems("test")
    rows = [r for g in gsm_golds for r in gsm8k_rows(g)]
    rows += [r for p in minerva[::2] for r in minerva_rows(p.answer, parse_number(p.answer))]
    values = sorted({int(g) for g in gsm_golds if g.isdigit() and 1 < int(g) < 1000 and int(int(g) ** 0.5) ** 2 != int(g)})
    rows += [r for a, b in zip(values[::6], values[3::6]) for r in math_style_rows(a, b)]
    rows += [r for a, b, c in zip(values[1::9], values[4::9], values[7::9]) for r in structure_rows(a, b, c)]
    rows += [r for g in sorted({int(g) for g in gsm_golds if g.isdigit() and int(g) >= 1000}) for r in thousands_rows(g)]
    rows += [r for w, o in zip(TEXT_ANSWERS, TEXT_ANSWERS[1:] + TEXT_ANSWERS[:1]) for r in text_case_rows(w, o)]
    return rows + math_rows()


def score(rows: list[dict]) -> tuple[list[tuple], float, list[dict]]:
    """Per class: rows, agreement, false accepts, false rejects; the seconds taken; the disagreements."""
    sys.path.insert(0, str(ROOT / "src"))
    from imm.tasks.registry import get_task
    from imm import verify

    start = time.perf_counter()
    verdicts: list[bool] = [False] * len(rows)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r["task"], r["metric"]), []).append(i)
    for (task_name, metric), idx in groups.items():
        kind = get_task(task_name).answer_kind
        got = verify.check_many([rows[i]["completion"] for i in idx], [rows[i]["gold"] for i in idx], kind, metric)
        for i, v in zip(idx, got):
            verdicts[i] = v.correct
    seconds = time.perf_counter() - start
    wrong = [{**r, "verdict": v} for r, v in zip(rows, verdicts) if v != r["label"]]
    table = []
    for cls in sorted({r["class"] for r in rows}):
        mine = [(r, v) for r, v in zip(rows, verdicts) if r["class"] == cls]
        fa = sum(v and not r["label"] for r, v in mine)
        fr = sum(r["label"] and not v for r, v in mine)
        table.append((cls, len(mine), 1 - (fa + fr) / len(mine), fa, fr))
    return table, seconds, wrong


def render(table: list[tuple], seconds: float, n: int) -> str:
    lines = ["| class | rows | agreement | false accepts | false rejects |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {c}{' *' if c in ISSUE_CLASSES else ''} | {k} | {a:.1%} | {fa} | {fr} |" for c, k, a, fa, fr in table]
    agree = sum(k * a for _, k, a, _, _ in table) / n
    fa, fr = sum(t[3] for t in table), sum(t[4] for t in table)
    lines.append(f"| **all** | {n} | {agree:.2%} | {fa} | {fr} |")
    return "\n".join(lines) + (f"\n\n`*` a class of issue 13 or 25 (zero false accepts required). Throughput: {n} rows in "
                               f"{seconds:.2f} s = {n / seconds:,.0f} rows/s (check_many per task and metric, math-verify "
                               f"workers started on first use and counted).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help=f"rewrite {CORPUS.relative_to(ROOT)} from ../shared/data")
    parser.add_argument("--append-docs", action="store_true")
    args = parser.parse_args()
    if args.build:
        rows = build()
        CORPUS.parent.mkdir(parents=True, exist_ok=True)
        CORPUS.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"wrote {len(rows)} rows to {CORPUS.relative_to(ROOT)} ({dict(Counter(r['class'] for r in rows))})")
        return 0
    if not CORPUS.is_file():
        print(f"{CORPUS} not found; run with --build first", file=sys.stderr)
        return 1
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    table, seconds, wrong = score(rows)
    text = render(table, seconds, len(rows))
    print(text)
    for r in wrong:
        print(f"disagrees: [{r['class']}] {r['task']} {r['metric']} gold={r['gold']!r} label={r['label']}: {r['completion']!r}")
    if args.append_docs:
        _append_docs(text)
    return 0


def _append_docs(text: str) -> None:
    corpus = ("Corpus: `tests/data/checker_corpus.jsonl` (built by `--build` from GSM8K test and Minerva MATH golds, "
              "plus hand-written MATH-style golds and hostile answers).")
    write_section("Answer checker against the labelled corpus", [corpus, "", text],
                  command=".venv/bin/python benchmarks/checker_corpus.py --append-docs")


if __name__ == "__main__":
    sys.exit(main())
