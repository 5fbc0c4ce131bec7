"""Peak memory per stage (imm.stage_memory): per stage, not the process's all-time peak; child processes
counted; and the real stages of a run leave no model alive behind them."""

import dataclasses
import gc
import json
import subprocess
import sys
import time

import pytest

from imm.stage_memory import StageMemory

MIB = 2**20


STAGES = """
import json, sys, time
import torch
import imm.stage_memory as stage_memory
if sys.argv[1] == "sampled":
    stage_memory._reset_high_water_mark = lambda: False
with stage_memory.StageMemory() as big:
    block = torch.ones(300 * 2**20 // 4)  # touched, so resident
    time.sleep(0.6)  # two samples' time
    del block
with stage_memory.StageMemory() as small:
    pass
print(json.dumps([big.record(), small.record()]))
"""


@pytest.mark.parametrize("how", ["high-water-mark", "sampled"])
def test_each_stage_gets_its_own_peak_not_the_process_high_water_mark(how):
    """Stage one holds 300 MiB for 0.6 s (so that the sampled fallback, where /proc cannot reset the peak,
    sees it too); stage two holds nothing: its peak is at least 250 MiB lower, where the process's lifetime
    high-water mark (ru_maxrss) would report stage one's again. In a fresh process: one that has run the
    rest of the suite holds gigabytes its allocator keeps, and a new block may reuse them."""
    out = subprocess.run([sys.executable, "-c", STAGES, how], check=True, capture_output=True, text=True).stdout
    big, small = json.loads(out)
    assert big["peak_rss_mib"] - small["peak_rss_mib"] >= 250
    assert small["children_peak_rss_mib"] == 0
    assert "peak_gpu_mib" not in small  # no CUDA in that process


def test_a_child_process_counts_in_the_stage_that_started_it_only():
    """A child that holds 200 MiB is sampled (every 0.25 s) at 200 MiB or more in the stage that started it;
    the next stage, during which it still runs, does not count it."""
    code = "import sys, time; block = bytearray(200 * 2**20); print(flush=True); time.sleep(float(sys.argv[1]))"
    with StageMemory() as first:
        subprocess.run([sys.executable, "-c", code, "1.0"], check=True)
        pool = subprocess.Popen([sys.executable, "-c", code, "30"], stdout=subprocess.PIPE)
        pool.stdout.readline()  # it holds its 200 MiB now
        time.sleep(0.6)
    with StageMemory() as second:
        time.sleep(0.6)
    pool.kill()
    pool.wait()
    assert first.record()["children_peak_rss_mib"] >= 200
    assert second.record()["children_peak_rss_mib"] == 0


@pytest.mark.slow
def test_the_real_stages_free_their_models_and_timings_record_memory(tmp_path):
    """One iteration of the imm arm on the built-in model: after every stage no model is alive (a stage
    holds its own and frees it, so two never share a device), and every line of timings.jsonl has a peak."""
    from transformers import PreTrainedModel

    from imm.preflight import load_config
    from imm.layout import RunLayout
    from imm.loop import real_stages, run_loop
    from imm.models import fetch_model

    cfg = load_config("smoke", (f"out_dir={tmp_path}", "iterations=1", "arms=[imm]", "data.train_questions=16",
                                "eval.limit=8", "data.ood_tasks=[arith_long]", "eval.diversity_k=0",
                                "analysis.probe_size=4"))
    stages = real_stages(cfg, RunLayout(cfg.run_dir), fetch_model(cfg.model.base).folder)
    alive_after = {}

    def checked(name, stage):
        def run(*args):
            message = stage(*args)
            gc.collect()
            alive_after[name] = sum(isinstance(o, PreTrainedModel) for o in gc.get_objects())
            return message
        return run

    names = ("sample", "verify", "finetune", "merge", "evaluate", "analyse")
    run_loop(cfg, stages=dataclasses.replace(stages, **{n: checked(n, getattr(stages, n)) for n in names}))
    assert set(alive_after) == set(names) and all(n == 0 for n in alive_after.values()), alive_after
    lines = [json.loads(line) for line in (cfg.run_dir / "timings.jsonl").read_text().splitlines()]
    assert {line["stage"] for line in lines} == set(names)
    assert all(line["peak_rss_mib"] > 100 and line["children_peak_rss_mib"] >= 0 for line in lines)


def test_a_peak_reset_that_proc_ignores_falls_back_to_sampling(monkeypatch):
    """A /proc that accepts the reset but keeps the old peak (1 GiB above the current RSS here) is not trusted."""
    import imm.stage_memory as stage_memory

    figures = {"VmHWM": 3 * 2**30, "VmRSS": 2 * 2**30}
    monkeypatch.setattr(stage_memory, "_status", figures.get)
    assert stage_memory._reset_high_water_mark() is False
    figures["VmHWM"] = figures["VmRSS"] + MIB
    assert stage_memory._reset_high_water_mark() is True


def test_a_command_freezes_what_outlives_its_first_stage_and_hands_it_back():
    """Within long_lived_frozen the first stage's exit freezes the survivors (later collections skip them);
    garbage made after that is still collected; on leaving, nothing stays frozen."""
    from imm.stage_memory import long_lived_frozen

    class Cycle:
        def __init__(self):
            self.me = self

    assert gc.get_freeze_count() == 0
    with long_lived_frozen():
        with StageMemory():
            pass
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with StageMemory():
            made = Cycle()
            ref = __import__("weakref").ref(made)
            del made
        assert ref() is None  # a cycle made after the freeze is collected at its stage's exit
        assert gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == 0
