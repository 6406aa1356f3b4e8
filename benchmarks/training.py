"""Training API overhead: the same LoRA steps as a plain PEFT loop and through the REST API.

The plain loop runs in this process: tokenizer, padded batch, forward, summed cross-entropy,
backward, the engine's AdamW step (fused; lr 1e-4, betas 0.9/0.95, eps 1e-12), on the
registry's model with the registry's LoRA settings, at PyTorch's default thread count and at
the model's `cpu_threads` where the registry sets one. The API side is one `promptlooper serve`
process on a fresh SQLite database, driven by the blocking SDK over HTTP on loopback:
`forward_backward` then `optim_step` per step, waiting for each; with `forward_backward`
queued (`wait=False`) so only `optim_step` waits; and with every call queued and only the last
result awaited (the SDK sends queued calls in the background, in batches). To tell the engine's
cost from the API's, the same calls also go straight to a `TrainingBackend` (the server's
engine, in its worker process), no HTTP. They alternate, `--repeats` times; medians.

    .venv/bin/python -m benchmarks.training --model tiny-test --steps 40 --repeats 16
    .venv/bin/python -m benchmarks.training --model smollm2-135m-instruct --steps 5 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from benchmarks.server import start_server
from promptlooper.client import Client
from promptlooper.training.backend import TrainingBackend
from promptlooper.training.backend.host import RunSpec
from promptlooper.training.backend.loading import load
from promptlooper.training.registry import load_registry
from promptlooper.training.schemas import LossRequest, OptimStep

PORT = 8792
TEXTS = [
    "Classify the support ticket: my card was charged twice. Answer: billing.",
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "Once upon a time there was a small model that learned to count: one two three.",
    "Translate to French: hello, good morning, thank you, goodbye.",
    "Positive negative neutral yes no true false red green blue.",
    "What is the capital of France? The capital of France is Paris.",
    "Classify the support ticket: the app crashes when I log in. Answer: bug.",
    "The quick brown fox jumps over the lazy dog, again and again.",
]


def plain_loop(model_name: str, steps: int, data_dir: Path) -> tuple[float, int]:
    """Seconds for ``steps`` steps, and the tokens in one batch."""
    entry = load_registry().get(model_name)
    loaded = load(entry, data_dir, torch.device("cpu"))
    tokenizer = loaded.tokenizer
    lora = entry.lora
    config = LoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=lora.target_modules, task_type="CAUSAL_LM",
    )  # fmt: skip
    model = get_peft_model(loaded.model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=1e-4, betas=(0.9, 0.95), eps=1e-12, weight_decay=0, fused=True
    )  # as the engine's
    model.train()
    tokens = 0
    started = time.perf_counter()
    for _ in range(steps):
        batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        logits = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1]).logits
        logprobs = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
        loss = -(logprobs * mask[:, 1:]).sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens = int(mask.sum())
    return time.perf_counter() - started, tokens


def plain_name(threads: int) -> str:
    return f"plain PEFT loop, {threads} thread(s)"


MODES = {
    "wait": "API, every call waits",
    "step": "API, optim_step waits",
    "queued": "API, all queued",
}


def api_loop(client: Client, model_name: str, steps: int, mode: str) -> float:
    """``wait``: every call waits; ``step``: forward_backward queued, optim_step waits;
    ``queued``: every call queued, only the last step's result awaited."""
    tc = client.training.create(model_name)
    tc.forward_backward(TEXTS)  # the first call loads the model: not part of the timing
    tc.optim_step()
    started = time.perf_counter()
    last = None
    for _ in range(steps):
        tc.forward_backward(TEXTS, wait=mode == "wait")
        last = tc.optim_step(wait=mode != "queued")
    if mode == "queued":
        tc.result(last)
    elapsed = time.perf_counter() - started
    client.training.delete(tc.run_id)
    return elapsed


def backend_loop(backend: TrainingBackend, model_name: str, steps: int, key: str) -> float:
    """Seconds for ``steps`` steps queued on the backend's worker process, for a fresh
    adapter whose first step is made beforehand."""
    entry = load_registry().get(model_name)
    lora = entry.lora
    spec = RunSpec(
        key=key, seed=0, rank=lora.rank, alpha=lora.alpha, dropout=lora.dropout,
        target_modules=tuple(lora.target_modules),
    )  # fmt: skip
    request = LossRequest.model_validate({"examples": [{"text": t} for t in TEXTS]})
    backend.submit(entry, "forward_backward", spec, request).result()
    backend.submit(entry, "optim_step", spec, OptimStep()).result()
    started = time.perf_counter()
    for _ in range(steps):
        backend.submit(entry, "forward_backward", spec, request)
        last = backend.submit(entry, "optim_step", spec, OptimStep())
    last.result()
    elapsed = time.perf_counter() - started
    backend.forget(entry, key)
    return elapsed


def serve(folder: Path, key: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
        "DATA_DIR": str(folder / "data"),
        "API_KEY": key,
        "LOG_LEVEL": "warning",
    }
    return start_server(env, PORT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-test")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    model_threads = load_registry().get(args.model).cpu_threads or default_threads
    thread_counts = sorted({default_threads, model_threads}, reverse=True)

    key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plain_loop(args.model, 1, folder / "data")  # warm caches (and convert GGUF once)
        server = serve(folder, key)
        backend = TrainingBackend(folder / "data", "cpu")
        series: dict[str, list[float]] = {}
        tokens = 0

        def plain(threads: int) -> float:
            nonlocal tokens
            torch.set_num_threads(threads)
            try:
                seconds, tokens = plain_loop(args.model, args.steps, folder / "data")
            finally:
                torch.set_num_threads(default_threads)
            return seconds

        try:
            with Client(f"http://127.0.0.1:{PORT}", api_key=key, timeout=600) as client:
                loops: list[tuple[str, Callable[[int], float]]] = [
                    *((plain_name(n), lambda _r, n=n: plain(n)) for n in thread_counts),
                    (
                        "backend, no HTTP",
                        lambda r: backend_loop(backend, args.model, args.steps, f"bench{r}"),
                    ),
                    *(
                        (name, lambda _r, mode=mode: api_loop(client, args.model, args.steps, mode))
                        for mode, name in MODES.items()
                    ),
                ]
                for repeat in range(args.repeats):
                    # A different loop goes first each time: none always meets the machine
                    # in the same state.
                    shift = repeat % len(loops)
                    for name, loop in loops[shift:] + loops[:shift]:
                        series.setdefault(name, []).append(loop(repeat))
        finally:
            backend.shutdown()
            server.terminate()
            server.wait(10)

    # Each loop against the same repeat's run of a plain loop: the machine's speed drifts
    # between repeats, the ratio within one much less. Two references: the plain loop on the
    # worker's thread count (the same computation), and the plain loop that is faster overall
    # (by median; not the faster of the two in each repeat, which is biased low: the smaller
    # of two noisy times made even an identical loop look a few per cent slower).
    same = series[plain_name(model_threads)]
    fastest = min((series[plain_name(n)] for n in thread_counts), key=statistics.median)
    print(f"{args.model}: {args.steps} steps x {args.repeats} repeats, batch of {len(TEXTS)}"
          f" ({tokens} tokens); the worker runs {model_threads} torch thread(s). Overhead:"
          " median over repeats of the time against the plain loop on the worker's thread"
          " count (quartiles), and against the faster plain loop")  # fmt: skip
    print(f"{'loop':<28} {'steps/s':>8} {'tokens/s':>9} {'same threads':>13} {'quartiles':>15}"
          f" {'fastest':>8}")  # fmt: skip
    for name, _loop in loops:
        times = series[name]
        rate = args.steps / statistics.median(times)
        ratios = [100 * (t / p - 1) for t, p in zip(times, same, strict=True)]
        low, mid, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        against_fastest = statistics.median(t / p - 1 for t, p in zip(times, fastest, strict=True))
        print(f"{name:<28} {rate:>8.2f} {rate * tokens:>9.0f} {mid:>12.1f}% {low:>6.1f} to"
              f" {high:>5.1f} {100 * against_fastest:>7.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()
