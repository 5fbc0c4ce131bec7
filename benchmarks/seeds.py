"""Accuracy and collapse figures of several runs of one experiment (different seeds), as markdown.

    python benchmarks/seeds.py RUN_DIR [RUN_DIR ...]

Prints mean (min-max) across the runs per arm, iteration and model: greedy strict-match accuracy on
every task, then the diversity figures on the in-domain samples.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from imm.report import Column, read_summary, seeds_table


def main() -> None:
    dirs = [Path(d) for d in sys.argv[1:]]
    runs = [read_summary(d / "summary.csv") for d in dirs]
    config = yaml.safe_load((dirs[0] / "config.yaml").read_text())
    data, k = config["data"], config["eval"]["diversity_k"]
    tasks = [spec.partition("=")[0] for spec in (*data["id_tasks"], *data["ood_tasks"])]
    print(f"Greedy strict-match accuracy (%), mean (min–max) over {len(runs)} seeds\n")
    id_names = {spec.partition("=")[0] for spec in data["id_tasks"]}
    print(seeds_table(runs, [Column(t + (" (ID)" if t in id_names else ""), t, "strict-match") for t in tasks]))
    task = f"{data['id_tasks'][0].partition('=')[0]}@diversity"
    print(f"\nCollapse figures on {k} samples per question ({task}), mean (min–max)\n")
    print(seeds_table(runs, [Column(f"pass@{k} (%)", task, f"pass@{k}"),
                             Column("unique answers", task, "unique-answers", 1.0, 2),
                             Column("distinct-2", task, "distinct-2", 1.0, 3),
                             Column("self-BLEU", task, "self-bleu", 1.0, 3),
                             Column("entropy (nats)", task, "entropy", 1.0, 4)]))


if __name__ == "__main__":
    main()
