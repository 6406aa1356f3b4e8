"""Training API overhead: the same LoRA steps as a plain PEFT loop and through the REST API.

The plain loop runs in this process: tokenizer, padded batch, forward, summed cross-entropy,
backward, AdamW step (lr 1e-4, betas 0.9/0.95, eps 1e-12), on the registry's model with the
registry's LoRA settings. The API side is one `promptlooper serve` process on a fresh SQLite
database, driven by the blocking SDK over HTTP on loopback: `forward_backward` then
`optim_step` per step, waiting for each; with `forward_backward` queued (`wait=False`) so
only `optim_step` waits; and with every call queued and only the last result awaited. To
tell the engine's cost from the API's, the same calls also go straight to a `TrainingBackend`
(the server's engine, on its worker thread) in a fresh process, no HTTP. They alternate,
`--repeats` times; medians.

    .venv/bin/python -m benchmarks.training --model tiny-test --steps 50 --repeats 5
    .venv/bin/python -m benchmarks.training --model smollm2-135m-instruct --steps 5 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from benchmarks.server import start_server
from promptlooper.client import Client
from promptlooper.training.backend.loading import load
from promptlooper.training.registry import load_registry

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
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), eps=1e-12, weight_decay=0)
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


def backend_loop(model_name: str, steps: int, data_dir: Path) -> float:
    """Seconds for ``steps`` steps queued on the backend's worker thread, the model loaded and
    the first step made beforehand. Run in a process of its own: once a second thread has used
    PyTorch in a process, the plain loop there slows down."""
    from promptlooper.training.backend import TrainingBackend
    from promptlooper.training.backend.host import RunSpec
    from promptlooper.training.schemas import LossRequest, OptimStep

    entry = load_registry().get(model_name)
    lora = entry.lora
    spec = RunSpec(
        key="bench", seed=0, rank=lora.rank, alpha=lora.alpha, dropout=lora.dropout,
        target_modules=tuple(lora.target_modules),
    )  # fmt: skip
    request = LossRequest.model_validate({"examples": [{"text": t} for t in TEXTS]})
    backend = TrainingBackend(data_dir, "cpu")
    try:
        backend.submit(entry, "forward_backward", spec, request).result()
        backend.submit(entry, "optim_step", spec, OptimStep()).result()
        started = time.perf_counter()
        for _ in range(steps):
            backend.submit(entry, "forward_backward", spec, request)
            last = backend.submit(entry, "optim_step", spec, OptimStep())
        last.result()
        return time.perf_counter() - started
    finally:
        backend.shutdown()


def backend_in_subprocess(model_name: str, steps: int, data_dir: Path) -> float:
    args = ["--model", model_name, "--steps", str(steps), "--backend-only", str(data_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.training", *args],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(done.stdout.split()[-1])


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
    parser.add_argument("--backend-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend_only:
        print(backend_loop(args.model, args.steps, args.backend_only))
        return

    key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plain_loop(args.model, 1, folder / "data")  # warm caches (and convert GGUF once)
        server = serve(folder, key)
        plain: list[float] = []
        direct: list[float] = []
        modes: dict[str, list[float]] = {"wait": [], "step": [], "queued": []}
        try:
            with Client(f"http://127.0.0.1:{PORT}", api_key=key, timeout=600) as client:
                for _ in range(args.repeats):
                    seconds, tokens = plain_loop(args.model, args.steps, folder / "data")
                    plain.append(seconds)
                    direct.append(backend_in_subprocess(args.model, args.steps, folder / "data"))
                    for mode, series in modes.items():
                        series.append(api_loop(client, args.model, args.steps, mode))
        finally:
            server.terminate()
            server.wait(10)

    def rate(seconds: list[float]) -> float:
        return args.steps / statistics.median(seconds)

    base = rate(plain)
    print(f"{args.model}: {args.steps} steps x {args.repeats} repeats, batch of {len(TEXTS)}"
          f" ({tokens} tokens), torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'loop':<28} {'steps/s':>8} {'tokens/s':>9} {'overhead':>9}")
    for name, series in [
        ("plain PEFT loop", plain),
        ("backend, no HTTP", direct),
        ("API, every call waits", modes["wait"]),
        ("API, optim_step waits", modes["step"]),
        ("API, all queued", modes["queued"]),
    ]:
        r = rate(series)
        print(f"{name:<28} {r:>8.2f} {r * tokens:>9.0f} {100 * (base / r - 1):>8.1f}%")


if __name__ == "__main__":
    main()
