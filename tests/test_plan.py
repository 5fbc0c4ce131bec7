"""`imm plan`: the work, memory and disk of a run, counted before it starts (imm.plan, imm.plan_memory)."""

import pytest

from imm.cli import main
from imm.preflight import load_config
from imm.models import BUILTIN_DIR
from imm.plan import disk_bytes, format_plan, make_plan, side_by_side, stage_seconds, training_lanes
from imm.plan_memory import MIB, Memory, ModelShape, generation_memory, lora_parameters, lora_saved, read_shape, \
    training_memory

PAPER = ("model.base=" + str(BUILTIN_DIR),)  # tests are offline: a local checkpoint in place of the hub id


def test_the_paper_config_is_counted_as_the_loop_runs_it():
    """paper-gsm8k: 2 arms, 3 iterations, 7,473 questions × K = 3, 512 new tokens, data on the hub (so the prompt
    is the assumed 256 tokens), 3 epochs of batch 8 × 8, GSM8K + 3 OOD sets at limit 1,319, diversity 200 × 4.
    - sample: t = 1 shared by both arms, then 2 each: 5 runs; 5 × 7,473 = 37,365 prompts, × 3 = 112,095
      samples, × 512 = 57,392,640 tokens.
    - finetune: 5 runs (F_1 shared); each ≤ 22,419 sequences × 3 epochs = 67,257 → 336,285; a sequence is
      min(512, 256 + 512 + 1) = 512 tokens → 172,177,920; steps ⌈22,419 / 64⌉ = 351 × 3 = 1,053 → 5,265.
    - evaluate: θ0; t = 1: F_1 once and θ_1; t = 2, 3: both F_t and θ_t → 1 + 2 + 3 + 3 = 9 runs, each
      4 × 1,319 = 5,276 greedy + 200 × 4 diversity samples = 6,076 samples, × 512 = 3,110,912 tokens.
    - disk: 5 F_t + 3 θ_t in θ0's dtype (the built-in model's float32), 1,440,640 parameters × 4 bytes each;
      with model.checkpoint_dtype=bfloat16, 2 bytes each."""
    plan = make_plan(load_config("paper-gsm8k", PAPER))
    w = plan.work
    assert not plan.lengths.measured and plan.lengths.max_prompt == 256
    assert (w["sample"].runs, w["sample"].prompts, w["sample"].samples) == (5, 37_365, 112_095)
    assert w["sample"].generated_tokens == 57_392_640
    assert (w["finetune"].runs, w["finetune"].train_sequences, w["finetune"].train_tokens) == (5, 336_285, 172_177_920)
    assert w["finetune"].steps == 5_265 and (w["merge"].runs, w["merge"].merges) == (3, 3)
    assert (w["evaluate"].runs, w["evaluate"].samples, w["evaluate"].generated_tokens) == (9, 9 * 6_076, 9 * 3_110_912)
    assert plan.shape.parameters == 1_440_640 and disk_bytes(plan) == 8 * 1_440_640 * 4
    halved = make_plan(load_config("paper-gsm8k", (*PAPER, "model.checkpoint_dtype=bfloat16")))
    assert disk_bytes(halved) == 8 * 1_440_640 * 2
    table = format_plan(plan, "cpu", runtime=0)
    assert "| finetune | 5 |" in table and "5 F_t + 3 theta_t" in table


def test_imm_plan_prints_the_table_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--config", "paper-gsm8k", *PAPER, "--tokens-per-second", "1000",
                 "--train-tokens-per-second", "2000"]) == 0
    out = capsys.readouterr().out
    assert "| **total** |" in out and "memory by part" in out and "disk:" in out
    assert "| sample | 5 |" in out and "15.9 h |" in out  # 57,392,640 tokens / 1,000 per second = 15.94 h
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--tokens-per-second", "-1"], "--tokens-per-second must be 0 or more"),
    (["--prompt-tokens", "0"], "--prompt-tokens must be at least 1"),
    (["finetune.epochs=0"], "finetune.epochs must be in [1, 10000], got 0"),
    (["nonsense.key=1"], "unknown config key nonsense"),
    (["model.base=/no/such/folder"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(["plan", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_the_built_in_default_measures_its_prompts():
    """The world's data are local, so the prompts are tokenised: 1,000 questions × K = 4 per sampling run."""
    plan = make_plan(load_config("default"))
    assert plan.lengths.measured and 0 < plan.lengths.mean_prompt <= plan.lengths.max_prompt
    assert plan.work["sample"].samples == plan.work["sample"].runs * 4_000


SHAPE = ModelShape(parameters=1_000, blocks=2, hidden=4, intermediate=8, heads=2, kv_heads=1, head_dim=2, vocab=10,
                   stored_dtype="float32")


def test_generation_memory_by_hand():
    """rows 6, prompt rows 2, prompt 3 + new 5 = 8 tokens, float32:
    weights 1,000 × 4 = 4,000; kv cache 2 × 2 blocks × kv width 2 × 6 rows × 8 × 4 = 1,536;
    prompt pass 2 × 3 × (4·4 + 2·2 + 3·8 + 2 heads × 3) × 4 = 6 × 50 × 4 = 1,200; logits 6 × 10 × 4 × 3 = 720.
    Two workers double the cache, prompt pass and logits, not the weights."""
    one = generation_memory(SHAPE, 4, rows=6, prompt_rows=2, prompt_tokens=3, new_tokens=5, runtime=7)
    assert dict(one.parts) == {"weights": 4_000, "kv cache": 1_536, "prompt pass": 1_200, "logits": 720, "runtime": 7}
    two = generation_memory(SHAPE, 4, rows=6, prompt_rows=2, prompt_tokens=3, new_tokens=5, workers=2)
    assert two.total == 4_000 + 2 * (1_536 + 1_200 + 720)


def test_training_memory_by_hand():
    """batch 2 × 5 tokens = 10 rows, float32, full (1,000 trained): weights 4,000, gradients 4,000, optimizer
    3 × 4,000 = 12,000; per block per token 10·4 + 2·2 + 4·8 + 2 heads × 5 = 86 numbers → 10 × 86 × 4 × 2
    blocks = 6,880, logits 10 × 10 × (4 + 8) = 1,200. bf16 autocast: activations at 2 bytes (3,440 +
    10 × 10 × 10 = 1,000) and the weights' bf16 copies (+2,000)."""
    full = training_memory(SHAPE, trained=1_000, batch=2, tokens=5, autocast=False, checkpointing=False)
    assert dict(full.parts) == {"weights": 4_000, "gradients": 4_000, "optimizer": 12_000, "activations": 8_080,
                                "runtime": 0}
    bf16 = training_memory(SHAPE, trained=1_000, batch=2, tokens=5, autocast=True, checkpointing=False)
    assert dict(bf16.parts)["activations"] == 4_440 and dict(bf16.parts)["weights"] == 6_000


def test_lora_trains_rank_times_inputs_plus_outputs_of_each_target():
    """rank 2 on q_proj (4 → 4) and down_proj (8 → 4) of 2 blocks: 2 × 2 × (8 + 12) = 80. Backward keeps, per
    token per block, each target's dropped-out input (4 and 8) and its rank-wide middle (2 each): 16; without
    dropout only the middles: 4. In training_memory they join the 86 numbers per block: 10 × 102 × 4 × 2 = 8,160."""
    assert lora_parameters(SHAPE, 2, ("q_proj", "down_proj")) == 80
    assert lora_saved(SHAPE, 2, ("q_proj", "down_proj"), 0.05) == 16 and lora_saved(SHAPE, 2, ("q_proj",), 0.0) == 2
    lora = training_memory(SHAPE, trained=80, batch=2, tokens=5, autocast=False, checkpointing=False, lora=16)
    assert dict(lora.parts)["activations"] == 8_160 + 1_200


def test_the_parameter_count_is_read_from_the_weights():
    """The built-in model: embeddings 499 × 128, head 499 × 128, 8 blocks of 4 × 128 × 128 attention,
    3 × 128 × 256 MLP and 2 norms of 128, a final norm of 128: 127,744 + 8 × 164,096 + 128 = 1,440,640."""
    shape = read_shape(BUILTIN_DIR)
    assert shape.parameters == 1_440_640 and (shape.blocks, shape.hidden, shape.vocab) == (8, 128, 499)


def test_time_needs_the_throughput_of_each_kind_of_work():
    plan = make_plan(load_config("paper-gsm8k", PAPER))
    finetune, sample = plan.work["finetune"], plan.work["sample"]
    assert stage_seconds(finetune, 1_000.0, 0.0) is None
    assert stage_seconds(finetune, 0.0, 1_000.0) == pytest.approx(172_177.92)
    assert stage_seconds(sample, 1_000.0, 0.0) == pytest.approx(57_392.64)
    assert MIB == 2**20


def test_fine_tunes_trained_side_by_side_each_hold_their_own_memory():
    """default, 3 iterations: F_1 is shared, from t = 2 both arms train one; on a CPU with 2 threads those two
    train at once in 2 forked processes, each with its own weights, gradients, optimizer and activations (the
    runtime is shared on forking); with finetune.side_by_side=false they train one after the other."""
    plan = make_plan(load_config("default", ("model.threads=2",)))
    assert plan.finetunes_at_once == 2 and training_lanes(plan, "cpu") == 2 and training_lanes(plan, "cuda") == 1
    apart = make_plan(load_config("default", ("model.threads=2", "finetune.side_by_side=false")))
    assert training_lanes(apart, "cpu") == 1
    assert side_by_side(Memory((("weights", 10), ("runtime", 5))), 2).parts == (("weights", 20), ("runtime", 5))
