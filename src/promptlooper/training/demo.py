"""The training run ``make demo`` leaves, so that the Training pages have a curve to show: a few
steps of supervised fine-tuning of the tiny model on a handful of triaged tickets, then an
adapter checkpoint, made through the trainer as the API makes them."""

from __future__ import annotations

from sqlalchemy import select

from promptlooper.auth.principal import Principal
from promptlooper.errors import PromptLooperError
from promptlooper.training import service
from promptlooper.training.models import TrainingRun
from promptlooper.training.schemas import (
    Example,
    LossRequest,
    Message,
    OptimStep,
    RunCreate,
    SaveState,
)
from promptlooper.training.trainer import Trainer

DEMO_RUN = "demo: ticket triage on tiny-test"
DEMO_MODEL = "tiny-test"
DEMO_STEPS = 12
DEMO_CHECKPOINT = "demo"
TICKETS = (
    ("My card was charged twice for the same order", "billing"),
    ("I need a refund for last month", "billing"),
    ("The app crashes when I open settings", "bug"),
    ("Export to CSV produces an empty file", "bug"),
    ("I forgot my password and the reset email never came", "account"),
    ("My parcel has not arrived after two weeks", "shipping"),
)
SYSTEM = "Classify the support ticket as billing, bug, account or shipping."


def _examples() -> list[Example]:
    return [
        Example(
            messages=[
                Message(role="system", content=SYSTEM),
                Message(role="user", content=ticket),
                Message(role="assistant", content=label),
            ]
        )
        for ticket, label in TICKETS
    ]


async def seed_demo_run(trainer: Trainer, owner: Principal) -> TrainingRun:
    """The demo run, trained now unless ``owner`` already has one (a second ``make demo``
    keeps the first run and its curve)."""
    async with trainer.sessionmaker() as session:
        existing = await session.scalar(
            select(TrainingRun).where(
                TrainingRun.owner_id == owner.user_id, TrainingRun.name == DEMO_RUN
            )
        )
        if existing is not None:
            return existing
        run = await service.create_run(
            session, owner, trainer.registry, RunCreate(base_model=DEMO_MODEL, name=DEMO_RUN)
        )
        await session.commit()
    batch = LossRequest(examples=_examples())
    try:
        for step in range(DEMO_STEPS):
            await trainer.call(owner, run.id, "forward_backward", batch)
            # a short warm-up, so the learning-rate chart has a shape
            rate = 2e-3 * min(1.0, (step + 1) / 4)
            await trainer.call(owner, run.id, "optim_step", OptimStep(learning_rate=rate))
        await trainer.call(owner, run.id, "save_state", SaveState(name=DEMO_CHECKPOINT))
    except PromptLooperError:  # no PyTorch here, say: no half-made run left behind
        await trainer.steps.flush()
        await trainer.delete_run(owner, run.id)
        raise
    await trainer.steps.flush()
    return run
