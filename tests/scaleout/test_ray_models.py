"""Local models and training on the cluster: a base model's host in a Ray actor gives the
numbers its worker process gives, placed with the resources it asks for."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from safetensors.torch import load_file

from promptlooper.sweeps.execution import run_experiment
from promptlooper.training.backend import TrainingBackend
from promptlooper.training.backend.host import RunSpec, placement
from promptlooper.training.registry import ModelEntry, load_registry
from promptlooper.training.schemas import LossRequest, OptimStep, SampleRequest
from tests.cli.inprocess import Invoke
from tests.cli.test_train_cli import DATA
from tests.scaleout.local_cluster import LocalCluster
from tests.scaleout.test_ray_sweeps import _options, _results
from tests.sweeps.conftest import ROWS_60, create

TINY = load_registry().get("tiny-test")
A = RunSpec(key="run-a", seed=3, rank=4, alpha=8.0, dropout=0.0, target_modules=("q_proj",))
B = RunSpec(key="run-b", seed=5, rank=4, alpha=8.0, dropout=0.0, target_modules=("q_proj",))
BATCHES = [
    LossRequest.model_validate({"examples": [{"text": text}]})
    for text in ("one two three four five", "the quick brown fox", "capital of France is Paris")
]
STEP = OptimStep(learning_rate=2e-2)
SAMPLE = SampleRequest(prompts=["Once upon a time"], max_tokens=8, temperature=1.0)


def _host_actor(backend: TrainingBackend) -> Any:
    from promptlooper.training.backend.actor import ActorHost

    host = backend._workers[TINY.name]
    assert isinstance(host, ActorHost)
    return host


def _placed(host: Any) -> dict[str, Any]:
    """Where the actor runs and what the cluster reserved for it."""
    import ray

    placed = ray.get(host.actor.placed.remote(), timeout=60)
    return {**placed, "resources": {k: v for k, v in placed["resources"].items() if v}}


def _train(backend: TrainingBackend, folder: Path) -> dict[str, Any]:
    """Three steps of run A interleaved with run B's, every call sent before any answer is
    read (FIFO per model makes that safe), a seeded-by-the-run sample, a checkpoint of A, and
    one step of a run resumed from it."""
    calls = []
    for batch in BATCHES:
        for spec in (A, B):
            calls.append(backend.submit(TINY, "forward_backward", spec, batch))
            calls.append(backend.submit(TINY, "optim_step", spec, STEP))
    calls.append(backend.submit(TINY, "sample", A, SAMPLE))
    calls.append(backend.submit(TINY, "save_state", A, "adapter", folder, "three", False))
    answers = [call.result(timeout=300) for call in calls]
    resumed = replace(A, key="run-a-resumed", resume_from=str(folder / "three"))
    more = backend.submit(TINY, "forward_backward", resumed, BATCHES[0]).result(timeout=300)
    return {
        "losses": [answer.loss for answer in answers[:-2]],
        "sample": answers[-2].samples[0].sequences[0].tokens,
        "saved": answers[-1],
        "weights": load_file(str(folder / "three" / "adapter_model.safetensors")),
        "resumed": more.loss,
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def on_cluster(data_dir: Path, ray_cluster: LocalCluster) -> Iterator[TrainingBackend]:
    backend = TrainingBackend(data_dir, "cpu", ray_cluster.address)
    yield backend
    backend.shutdown()  # the actor holds a CPU of the cluster: the other tests need it


def test_training_through_a_host_actor_equals_the_worker_process(
    data_dir: Path, on_cluster: TrainingBackend
) -> None:
    import ray

    in_process = TrainingBackend(data_dir, "cpu")
    try:
        expected = _train(in_process, data_dir / "here")
    finally:
        in_process.shutdown()
    got = _train(on_cluster, data_dir / "there")

    assert got["losses"] == expected["losses"]
    assert got["losses"][0] != got["losses"][-2]  # it trained: A's loss moved
    assert got["sample"] == expected["sample"]
    assert got["saved"] == expected["saved"] == (3, "three")
    assert got["weights"].keys() == expected["weights"].keys()
    for name, tensor in expected["weights"].items():
        assert got["weights"][name].equal(tensor), name
    assert got["resumed"] == expected["resumed"]

    host = _host_actor(on_cluster)
    assert host.name.startswith("model-tiny-test-")
    found = ray.get_actor(host.name, namespace="promptlooper")  # discoverable by name
    placed = ray.get(found.placed.remote())
    assert placed["node_id"] in {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert _placed(host)["resources"] == {"CPU": 1.0}  # no GPU asked for a CPU model


def test_a_host_actor_that_dies_fails_its_calls_and_is_replaced(
    on_cluster: TrainingBackend,
) -> None:
    import ray

    from promptlooper.errors import Unavailable

    first = on_cluster.submit(TINY, "forward_backward", A, BATCHES[0]).result(timeout=300)
    lost = _host_actor(on_cluster)
    ray.kill(lost.actor)
    with pytest.raises(Unavailable, match="training host for tiny-test on the Ray cluster"):
        on_cluster.submit(TINY, "forward_backward", A, BATCHES[0]).result(timeout=60)
    rebuilt = on_cluster.submit(TINY, "forward_backward", A, BATCHES[0]).result(timeout=300)
    assert rebuilt.loss == first.loss  # a fresh adapter, initialised from the run's seed
    assert _host_actor(on_cluster).name != lost.name


def test_a_host_actor_asks_for_a_gpu_when_its_model_runs_on_cuda() -> None:
    assert placement(TINY, "cuda") == {"num_cpus": 1, "num_gpus": 1}
    assert placement(TINY, "cuda:1") == {"num_cpus": 1, "num_gpus": 1}
    cuda_entry = ModelEntry.model_validate({**TINY.model_dump(), "device": "cuda"})
    assert placement(cuda_entry, "cpu") == {"num_cpus": 1, "num_gpus": 1}  # the entry says
    assert placement(TINY, "auto") == {"num_cpus": 1, "num_gpus": 0}
    threaded = ModelEntry.model_validate({**TINY.model_dump(), "cpu_threads": 2})
    assert placement(threaded, "cpu") == {"num_cpus": 2, "num_gpus": 0}


def _local_sweep() -> dict[str, Any]:
    return {
        "name": "tiny on the cluster",
        "parameter_space": {
            "model": ["local:tiny-test"],
            "prompt": ["Classify: {{ input }}"],
            "max_tokens": [6],
        },
        "dataset": {"rows": ROWS_60[:4]},
        "scorers": [{"name": "short", "type": "length", "max": 40}],
        "concurrency": 2,
    }


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the cluster's part, not the DB's
async def test_a_local_model_sweep_generates_in_the_host_actor_as_in_the_worker_process(
    client: httpx.AsyncClient,
    app: FastAPI,
    owner,
    project_id,
    sessionmaker,
    settings,
    ray_cluster,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from promptlooper.training.backend.actor import placements

    monkeypatch.setenv("DATA_DIR", str(data_dir))  # where the local provider's models run
    on_cluster = uuid.UUID((await create(client, owner, project_id, _local_sweep()))["id"])
    in_process = uuid.UUID((await create(client, owner, project_id, _local_sweep()))["id"])
    cluster_backend = TrainingBackend.shared(data_dir, "auto", ray_cluster.address)
    here_backend = TrainingBackend.shared(data_dir, "auto")
    try:
        there = await run_experiment(
            app.state.engine, on_cluster, options=_options(settings, ray_cluster)
        )
        host = _host_actor(cluster_backend)
        assert _placed(host)["resources"] == {"CPU": 1.0}
        assert [placed["actor"] for placed in placements()] == [host.name]
        here = await run_experiment(app.state.engine, in_process, options=_options(settings, None))
        assert TINY.name in here_backend._workers  # the run without Ray used a worker process
    finally:
        cluster_backend.shutdown()
        here_backend.shutdown()

    assert there.progress.done == here.progress.done == 4
    expected = await _results(sessionmaker, in_process)
    assert await _results(sessionmaker, on_cluster) == expected
    assert all(answer for _status, answer, _scores in expected.values())


def test_train_sft_with_ray_trains_in_a_host_actor_and_says_where(
    cli: Invoke, tmp_path: Path, ray_cluster: LocalCluster
) -> None:
    from promptlooper.training.backend.actor import placements

    data = tmp_path / "tickets.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in DATA) + "\n")
    outcome = cli(
        "train", "sft", "--model", "tiny-test", "--data", str(data), "--epochs", "2",
        "--batch-size", "2", "--lr", "2e-2", "--ray", ray_cluster.address,
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    where = re.escape(f"on the Ray cluster at {ray_cluster.address}: tiny-test in actor")
    assert re.search(where + r" model-tiny-test-\w+ on node \w+ \(CPU 1\)", outcome.err)
    assert re.search(r"loss [\d.]+ -> [\d.]+ over 4 steps", outcome.out)
    assert placements() == []  # the command stopped its actor on the way out
