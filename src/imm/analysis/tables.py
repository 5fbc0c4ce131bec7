"""The analysis outputs: layers.csv, importance.csv and superficiality.json, written atomically.

    layers.csv          model,layer,module,n_params,delta_l2,base_l2,relative,step_l2,cos_prev,pullback
                        one row per (checkpoint, layer, module); module "all" is the whole block; with
                        tied embeddings the head matrix is the embedding, so `head` holds only the final norm
    importance.csv      model,layer,ablation_drop,gradient_l2,influence,skipped_accuracy   (importance of θ0:
                        a column per measure of imm.analysis.importance.MEASURES)
    superficiality.json the figures of superficiality.py per checkpoint and importance kind, plus context
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, fields
from pathlib import Path
from typing import Sequence

from imm.analysis.importance import MEASURES, Importance
from imm.analysis.superficiality import Superficiality, superficiality
from imm.analysis.updates import ALL, LayerRow
from imm.config import ImportanceKind
from imm.outputs import atomic_write_json, atomic_write_text

LAYERS_CSV, IMPORTANCE_CSV, SUPERFICIALITY_JSON = "layers.csv", "importance.csv", "superficiality.json"
OUTPUTS = (LAYERS_CSV, IMPORTANCE_CSV, SUPERFICIALITY_JSON)
SKIPPED_ACCURACY = "skipped_accuracy"  # beside the ablation drop: the probe accuracy with the block skipped
IMPORTANCE_COLUMNS = ("model", "layer", *(m.column for m in MEASURES.values()), SKIPPED_ACCURACY)


def _csv_text(columns: Sequence[str], rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return out.getvalue()


def layers_csv(rows: list[LayerRow]) -> str:
    return _csv_text([f.name for f in fields(LayerRow)], [asdict(r) for r in rows])


def importance_csv(importance: dict[str, Importance], model: str = "base") -> str:
    layers = sorted({layer for imp in importance.values() for layer in imp.values})
    ablation = importance.get(ImportanceKind.ABLATION)
    rows = [
        {
            "model": model,
            "layer": layer,
            **{row.column: importance[kind].values[layer] if kind in importance else None for kind, row in MEASURES.items()},
            SKIPPED_ACCURACY: ablation.skipped_accuracy[layer] if ablation else None,
        }
        for layer in layers
    ]
    return _csv_text(IMPORTANCE_COLUMNS, rows)


def figures(rows: list[LayerRow], importance: dict[str, Importance], models: Sequence[str]) -> list[Superficiality]:
    """Superficiality of every checkpoint in `models` against every importance kind measured."""
    result = []
    for model in models:
        blocks = [r for r in rows if r.model == model and r.module == ALL and r.layer.isdigit()]
        updates = {int(r.layer): r.delta_l2 for r in blocks}
        relative = {int(r.layer): r.relative for r in blocks}
        n_params = {int(r.layer): r.n_params for r in blocks}
        for kind, imp in importance.items():
            result.append(superficiality(model, kind, imp.values, updates, relative, n_params))
    return result


def write_tables(out_dir: Path, rows: list[LayerRow], importance: dict[str, Importance], context: dict) -> list[Superficiality]:
    """Write the three outputs into `out_dir` (each file atomically); superficiality.json last."""
    models = list(dict.fromkeys(r.model for r in rows))
    found = figures(rows, importance, models)
    ablation = importance.get(ImportanceKind.ABLATION)
    atomic_write_text(Path(out_dir) / LAYERS_CSV, layers_csv(rows))
    atomic_write_text(Path(out_dir) / IMPORTANCE_CSV, importance_csv(importance))
    atomic_write_json(
        Path(out_dir) / SUPERFICIALITY_JSON,
        {**context, "probe_accuracy": ablation.accuracy if ablation else None, "figures": [asdict(f) for f in found]},
    )
    return found


def format_figures(found: list[Superficiality], label: str = "") -> str:
    """A plain-text table of the figures, one line per checkpoint and importance kind."""
    lines = []
    for f in found:
        rho = "n/a" if f.spearman is None else f"{f.spearman:+.3f}"
        share = "n/a" if f.critical_share is None else f"{f.critical_share:.3f}"
        critical = ",".join(map(str, f.critical))
        lines.append(f"{label}{f.model:<10} {f.importance:<9} spearman {rho:>6}  critical [{critical}] "
                     f"share {share} (uniform {f.uniform_share:.3f})")
    return "\n".join(lines)
