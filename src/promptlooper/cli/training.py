"""``promptlooper train``: the training API's models and runs, and a supervised fine-tune loop.

``train sft`` runs in this process through the same service the REST API uses (the run, its
metrics and checkpoints land in ``DATABASE_URL`` and ``DATA_DIR`` as if made over HTTP), so a
run started here can be inspected, sampled and swept from the server afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from promptlooper.cli.common import (
    async_command,
    console,
    database,
    err_console,
    load_settings,
    session_scope,
    with_ray,
)
from promptlooper.cli.sweeps import principal_for
from promptlooper.errors import BadExample, Invalid, PromptLooperError, problem_message
from promptlooper.files import read_text

if TYPE_CHECKING:
    from pydantic import BaseModel

Body = TypeVar("Body", bound="BaseModel")

train_app = typer.Typer(
    help="Fine-tuning: models, runs, metrics, and an SFT loop.", no_args_is_help=True
)
USER = typer.Option(None, "--user", help="Whose runs (default: the bootstrap admin).")
RUN = typer.Argument(..., help="Run id.")


def _registry(settings: Any) -> Any:
    from promptlooper.training.registry import load_registry

    return load_registry(settings.training_models_file)


def _run_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise Invalid(f"{value!r} is not a run id") from exc


@train_app.command("models")
def models() -> None:
    """The base models you can fine-tune."""
    from promptlooper.training import service

    table = Table("name", "source", "available", "max len", "LoRA default", "description")
    for m in service.list_models(_registry(load_settings())).data:
        lora = f"r={m.lora.rank} a={m.lora.alpha:g} {','.join(m.lora.target_modules)}"
        table.add_row(
            m.name,
            m.source,
            "yes" if m.available else "no",
            str(m.max_seq_len),
            lora,
            m.description,
        )
    console.print(table)


@train_app.command("runs")
@async_command
async def runs(user: str | None = USER) -> None:
    """Your training runs, newest first."""
    from promptlooper.training import service

    async with session_scope(load_settings()) as session:
        principal = await principal_for(session, user)
        found, _total = await service.list_runs(session, principal, limit=500, offset=0)
    table = Table("id", "name", "base model", "step", "created")
    for run in found:
        table.add_row(
            str(run.id), run.name, run.base_model, str(run.step), f"{run.created_at:%Y-%m-%d %H:%M}"
        )
    console.print(table)


@train_app.command("show")
@async_command
async def show(run_id: str = RUN, user: str | None = USER) -> None:
    """A run's settings and checkpoints."""
    from promptlooper.training import service

    async with session_scope(load_settings()) as session:
        principal = await principal_for(session, user)
        run = await service.get_run(session, principal, _run_id(run_id))
        saved = await service.checkpoints(session, run)
    console.print(
        f"run {run.id} {run.name!r} on {run.base_model}, step {run.step}, seed {run.seed}"
    )
    console.print(f"LoRA: {json.dumps(run.lora)}")
    for c in saved:
        console.print(f"  checkpoint {c.name} ({c.kind}, step {c.step}): {c.path}")


@train_app.command("metrics")
@async_command
async def metrics(
    run_id: str = RUN,
    user: str | None = USER,
    as_json: bool = typer.Option(False, "--json", help="One JSON array, an object per step."),
) -> None:
    """Every optimizer step's loss, tokens, grad norm and learning rate."""
    from promptlooper.training import service

    async with session_scope(load_settings()) as session:
        principal = await principal_for(session, user)
        run = await service.get_run(session, principal, _run_id(run_id))
        steps = await service.steps(session, run)
    if as_json:
        console.print_json(
            data=[
                {
                    "step": s.step,
                    "loss": s.loss,
                    "tokens": s.tokens,
                    "grad_norm": s.grad_norm,
                    "learning_rate": s.learning_rate,
                }
                for s in steps
            ]
        )
        return
    table = Table("step", "loss", "tokens", "grad norm", "lr")
    for s in steps:
        table.add_row(
            str(s.step),
            f"{s.loss:.4f}",
            str(s.tokens),
            f"{s.grad_norm:.3f}",
            f"{s.learning_rate:g}",
        )
    console.print(table)
    if steps:
        console.print(f"loss {steps[0].loss:.4f} -> {steps[-1].loss:.4f} over {len(steps)} steps")


def read_examples(path: Path) -> list[tuple[int, Any]]:
    """JSONL lines in any form the API takes (``text``, ``messages``, ``tokens``), each with
    its line number."""
    from pydantic import ValidationError

    from promptlooper.training.schemas import Example

    lines = read_text(path).splitlines()
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            examples.append((number, Example.model_validate(json.loads(line))))
        except json.JSONDecodeError as exc:
            raise Invalid(f"{path.name} line {number}: not JSON ({exc.msg})") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = problem_message(first)
            prefix = f"{path.name} line {number}: {where + ': ' if where else ''}"
            raise Invalid(prefix + message) from exc
    if not examples:
        raise Invalid(f"{path.name} holds no examples")
    return examples


def _request(schema: type[Body], options: Mapping[str, str], **values: Any) -> Body:
    """A request body built from command-line options and checked as the API checks it, before
    anything runs: a bad value is a usage error naming its option (a run is not created, or
    trained, for a checkpoint name that cannot be saved)."""
    from pydantic import ValidationError

    try:
        return schema(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        hint = f"'{options.get(field, field)}'"
        raise typer.BadParameter(problem_message(error), param_hint=hint) from None


@train_app.command("sft")
@async_command
async def sft(
    model: str = typer.Option(..., "--model", "-m", help="Base model (see `train models`)."),
    data: Path = typer.Option(..., "--data", "-d", help="JSONL file of examples."),
    epochs: int = typer.Option(3, min=1, help="Passes over the data."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    learning_rate: float = typer.Option(1e-4, "--lr", help="AdamW learning rate."),
    rank: int | None = typer.Option(None, min=1, help="LoRA rank (default: the model's)."),
    seed: int = typer.Option(0, min=0),
    name: str = typer.Option("", help="Run name."),
    save: str = typer.Option("final", help="Name of the adapter checkpoint saved at the end."),
    merged: bool = typer.Option(False, "--merged", help="Also save a merged standalone model."),
    user: str | None = USER,
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS",
        help="Train on the Ray cluster at ADDRESS: the model's host runs in an actor there "
        "(default: the RAY_ADDRESS setting).",
    ),
) -> None:
    """Supervised fine-tuning: forward_backward + optim_step per batch, with a progress bar."""
    from promptlooper.db.engine import create_sessionmaker
    from promptlooper.training import service
    from promptlooper.training.backend import TrainingBackend
    from promptlooper.training.schemas import (
        CheckpointPublic,
        LossRequest,
        OptimResult,
        OptimStep,
        RunCreate,
        SaveState,
    )
    from promptlooper.training.trainer import Trainer

    body = _request(
        RunCreate,
        {"base_model": "--model", "name": "--name", "lora_rank": "--rank", "seed": "--seed"},
        base_model=model,
        name=name or data.stem,
        lora_rank=rank,
        seed=seed,
    )
    optim = _request(OptimStep, {"learning_rate": "--lr"}, learning_rate=learning_rate)
    final = _request(SaveState, {"name": "--save"}, name=save)
    settings = with_ray(load_settings(), ray)
    registry = _registry(settings)
    registry.get(model)
    examples = read_examples(data)
    batches = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]
    backend = TrainingBackend(
        settings.data_dir, settings.training_device, settings.ray_address or None
    )
    try:
        async with database(settings) as engine:
            sessions = create_sessionmaker(engine)
            trainer = Trainer(sessions, backend, registry, settings.data_dir)
            async with sessions() as session:
                principal = await principal_for(session, user)
                run = await service.create_run(session, principal, registry, body)
                await session.commit()
            err_console.print(
                f"run {run.id} on {model}: {len(examples)} examples,"
                f" {len(batches)} batches x {epochs} epochs"
            )
            losses: list[float] = []
            failure: PromptLooperError | None = None
            try:
                with _progress() as bar:
                    task = bar.add_task("training", total=epochs * len(batches), loss="-")
                    for _epoch in range(epochs):
                        for chunk in batches:
                            batch = LossRequest(examples=[example for _line, example in chunk])
                            try:
                                await trainer.call(principal, run.id, "forward_backward", batch)
                            except BadExample as exc:  # name the line, not the batch's index
                                line = chunk[exc.index][0]
                                raise Invalid(f"{data.name} line {line}: {exc.reason}") from exc
                            step = await trainer.call(principal, run.id, "optim_step", optim)
                            assert isinstance(step, OptimResult)
                            losses.append(step.loss)
                            bar.update(task, advance=1, loss=f"{step.loss:.4f}")
            except PromptLooperError as exc:
                failure = exc
            finally:
                await trainer.close()  # the steps made are logged, even when one failed
            if failure is not None:
                if losses:
                    outcome = f"run {run.id} kept at step {len(losses)}"
                else:  # an empty run would only clutter `train runs`
                    await trainer.delete_run(principal, run.id)
                    outcome = f"nothing was trained: run {run.id} deleted"
                raise Invalid(f"{failure.message} ({outcome})") from failure
            saved = await trainer.call(principal, run.id, "save_state", final)
            assert isinstance(saved, CheckpointPublic)
            if settings.ray_address:
                print_model_hosts(settings.ray_address)
            console.print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps")
            console.print(f"run {run.id}: adapter saved as {saved.name} at {saved.path}")
            if merged:
                merge = SaveState(kind="merged")
                whole = await trainer.call(principal, run.id, "save_state", merge)
                assert isinstance(whole, CheckpointPublic)
                console.print(f"merged model saved as {whole.name} at {whole.path}")
    finally:
        backend.shutdown()


def print_model_hosts(address: str) -> bool:
    """Where this process's local models run on the Ray cluster at ``address``, and with
    what; False when none runs there."""
    from promptlooper.training.backend.actor import placements

    hosts = placements()
    for host in hosts:
        held = ", ".join(f"{name} {amount:g}" for name, amount in host["resources"].items())
        err_console.print(
            f"on the Ray cluster at {address}: {host['model']} in actor {host['actor']}"
            f" on node {host['node_id'][:12]} ({held or 'no reserved resources'})",
            highlight=False,
            soft_wrap=True,
        )
    return bool(hosts)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} steps"),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=err_console,
    )
