"""The child process of the `vllm` engine: one vLLM `LLM` on one checkpoint, answering requests on stdin.

Started by `imm.engines.vllm` with the Python of vLLM's own environment, as a script (that environment
has vLLM, torch and transformers, not imm), so this file imports only the standard library and vLLM:

    PYTHON vllm_worker.py '{"model": DIR, "dtype": "auto", "tensor_parallel": 1, ...}'

Protocol, one JSON object per line. The worker answers `{"ready": {...}}` once the engine is up (or
`{"error": "..."}`), then for every request line
`{"prompts": [[token ids], ...], "seeds": [int | null, ...], "temperature", "top_p", "max_new_tokens", "stop"}`
one line `{"outputs": [{"ids": [generated ids], "entropy": [per-step figure]}, ...]}` in request order.
An empty line or end of input shuts the engine down and ends the process. vLLM's own logs go to stderr:
file descriptor 1 is kept for the protocol alone.
"""

import json
import math
import os
import sys
import time

# This folder holds imm's own vllm.py, which `import vllm` would find first: drop it from the path (here, and
# so in the processes vLLM spawns, which inherit the path).
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

ENTROPY_TOP = 20  # logprobs per step (vLLM's default max_logprobs): the entropy figure sums over these


def step_entropy(logprobs: dict) -> float:
    """−Σ p log p over the returned tokens of the processed next-token distribution (nats): the top
    ENTROPY_TOP and the drawn token. A lower bound of the full entropy, equal to it when those tokens hold
    all the mass (top-p cut the rest, or a peaked distribution)."""
    total = 0.0
    for entry in logprobs.values():
        if entry.logprob > -math.inf:
            total -= math.exp(entry.logprob) * entry.logprob
    return total


def resolve_dtype(dtype: str) -> str:
    """The project's rule (imm.models.pick_dtype): auto is bfloat16 on a GPU that has it, else float32."""
    if dtype != "auto":
        return dtype
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        return "float32"
    return "bfloat16" if current_platform.has_device_capability(80) else "float32"


def in_this_process_on_a_cpu(settings: dict) -> str | None:
    """On a CPU with one tensor-parallel rank, vLLM's engine core and model run in this process, on the cores
    the parent bound it to (VLLM_CPU_OMP_THREADS_BIND), with OMP_NUM_THREADS threads: no engine-core and
    worker processes to start and stop (measured on the built-in model: start-up 4 s instead of 16, shut-down
    2 s instead of 8). Returns the executor to ask vLLM for."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu() or settings["tensor_parallel"] != 1:
        return settings["executor"] or None
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    cores = [int(c) for c in os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "").split(",") if c.strip().isdigit()]
    if cores:
        os.sched_setaffinity(0, cores)
    return "uni"


def start(settings: dict):
    from vllm import LLM
    from vllm.platforms import current_platform

    executor = in_this_process_on_a_cpu(settings)
    return LLM(
        settings["model"], dtype=resolve_dtype(settings["dtype"]),
        tensor_parallel_size=settings["tensor_parallel"], gpu_memory_utilization=settings["gpu_memory"],
        max_model_len=settings["max_model_len"] or None, max_num_seqs=settings["max_num_seqs"],
        distributed_executor_backend=executor,
        generation_config="vllm",  # the checkpoint's sampling defaults never apply: every field is set per request
        logprobs_mode="processed_logprobs", max_logprobs=ENTROPY_TOP,  # after temperature and top-p, as hf's scores
        enable_chunked_prefill=False if current_platform.is_cpu() else None,  # seeded CPU sampling needs it off
        # On a CPU, compiling the model costs every stage's start-up about a minute (measured on the built-in
        # model, 2 cores: 66 s compiled against 16 s eager); GPUs keep vLLM's compiled graphs and CUDA graphs.
        enforce_eager=current_platform.is_cpu(),
        trust_remote_code=settings["trust_remote_code"], seed=0,
    )


def answer(llm, request: dict) -> list[dict]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = [
        SamplingParams(n=1, temperature=request["temperature"], top_p=request["top_p"], top_k=0, min_p=0.0,
                       repetition_penalty=1.0, max_tokens=request["max_new_tokens"], stop=request["stop"] or None,
                       seed=seed, logprobs=ENTROPY_TOP)
        for seed in request["seeds"]
    ]
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in request["prompts"]]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    return [{"ids": list(out.outputs[0].token_ids),
             "entropy": [step_entropy(step) for step in out.outputs[0].logprobs or []]} for out in outputs]


def serve(protocol, settings: dict) -> None:
    started = time.perf_counter()
    try:
        import vllm

        llm = start(settings)
    except Exception as err:  # reported to the parent as one line, then the process ends
        first = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        print(json.dumps({"error": f"{type(err).__name__}: {first}"}), file=protocol, flush=True)
        raise
    ready = {"vllm": vllm.__version__, "seconds": time.perf_counter() - started}
    print(json.dumps({"ready": ready}), file=protocol, flush=True)
    try:
        for line in sys.stdin:
            if not line.strip():
                break
            print(json.dumps({"outputs": answer(llm, json.loads(line))}), file=protocol, flush=True)
    finally:
        llm.llm_engine.engine_core.shutdown()  # `del llm` leaves the engine core process running


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w")  # the parent reads this; everything else printed goes to stderr
    os.dup2(2, 1)
    serve(protocol, json.loads(sys.argv[1]))


if __name__ == "__main__":  # vLLM starts its engine core with spawn, which re-imports this file
    main()
