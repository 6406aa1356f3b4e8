"""``promptlooper agent`` and ``promptlooper variant``: versioned configs from the terminal.

Like sweeps, these work on ``DATABASE_URL`` directly. Agents are named by slug inside
``--project`` (a project name; ``default`` unless given), variants by slug or id. Config
fields are given as ``--set field=value`` (numbers parse as numbers, text stays as typed;
``field=@path`` reads the value from a file) or ``--model provider:name``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from promptlooper.cli.common import async_command, console, load_settings, session_scope
from promptlooper.errors import Invalid
from promptlooper.files import read_text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from promptlooper.auth.principal import Principal
    from promptlooper.variants.models import Agent, Variant

agent_app = typer.Typer(
    help="Manage agents: base configs, revisions, resolution.", no_args_is_help=True
)
variant_app = typer.Typer(
    help="Manage an agent's variants and which one is active.", no_args_is_help=True
)

PROJECT = typer.Option("default", "--project", "-p", help="Project name.")
USER = typer.Option(None, "--user", help="Act as this user (default: the built-in admin).")
SET = typer.Option(None, "--set", "-s", help="field=value (repeatable); field=@file reads a file.")
MODEL = typer.Option(None, "--model", "-m", help="provider:model, e.g. openai:gpt-4o-mini.")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def parse_fields(assignments: list[str] | None, model: str | None) -> dict[str, Any]:
    """Config fields from ``--set`` and ``--model``; ``Invalid`` names a malformed one."""
    fields: dict[str, Any] = {}
    if model is not None:
        provider, _, name = model.partition(":")
        if not provider or not name:
            raise Invalid(f"--model: expected provider:model, got {model!r}")
        fields["model_provider"], fields["model_name"] = provider, name
    from promptlooper.variants.schemas import META_FIELDS

    for item in assignments or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise Invalid(f"--set: expected field=value, got {item!r}")
        if key.strip() in META_FIELDS:
            # The API takes these beside the config; here they have their own options.
            raise Invalid(f"--set {key.strip()}: not a config field; --help shows where it goes")
        if raw.startswith("@"):
            fields[key.strip()] = read_text(Path(raw[1:]).expanduser(), f"--set {key}")
        else:
            fields[key.strip()] = _scalar(key.strip(), raw)
    return fields


def _scalar(field: str, raw: str) -> Any:
    """Text fields keep the text as typed (a prompt may look like YAML); numbers parse."""
    import typing

    import yaml

    from promptlooper.variants.config import ConfigFields

    if raw == "":
        return None
    known = ConfigFields.model_fields.get(field)
    if known is not None and str in typing.get_args(known.annotation):
        return raw
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return raw if isinstance(value, dict | list) else value


@dataclass
class Scope:
    session: AsyncSession
    principal: Principal
    project_id: Any


@asynccontextmanager
async def _scope(project: str, user: str | None, *, create: bool = False) -> AsyncIterator[Scope]:
    """One committed unit of work as ``user`` in ``project``."""
    from promptlooper.cli.sweeps import principal_for, project_of
    from promptlooper.projects import service as projects

    async with session_scope(load_settings()) as session:
        principal = await principal_for(session, user)
        find = projects.get_or_create_project if create else project_of
        owned = await find(session, principal, project)
        yield Scope(session, principal, owned.id)


async def _agent(scope: Scope, slug: str) -> Agent:
    from promptlooper.variants import service

    return await service.get_agent_by_slug(scope.session, scope.principal, scope.project_id, slug)


async def _variant(scope: Scope, agent: Agent, ref: str) -> Variant:
    from promptlooper.variants import service

    return await service.find_variant(scope.session, scope.principal, agent.id, ref)


async def _variant_slugs(scope: Scope, agent: Agent) -> dict[Any, str]:
    """Variant ids to slugs, for showing history that refers to variants by id."""
    from promptlooper.variants import service

    return {
        v.id: v.slug for v in await service.list_variants(scope.session, scope.principal, agent.id)
    }


def _config_table(config: dict[str, Any], provenance: dict[str, str] | None = None) -> Table:
    table = Table("field", "value", *(["from"] if provenance else []))
    for key, value in config.items():
        shown = "" if value is None else " ".join(str(value).split())
        table.add_row(key, shown[:80], *([provenance[key]] if provenance else []))
    return table


def _dump(value: Any) -> None:
    console.print_json(json.dumps(value, default=str))


# --- agents ---------------------------------------------------------------------------------


@agent_app.command("create")
@async_command
async def create_agent(
    name: str = typer.Argument(..., help="Agent name; the slug is made from it."),
    model: str | None = MODEL,
    assignments: list[str] | None = SET,
    description: str = typer.Option("", "--description", "-d"),
    slug: str | None = typer.Option(None, "--slug"),
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """Create an agent with a base config (a model is required)."""
    from promptlooper.variants import service

    fields = parse_fields(assignments, model)
    async with _scope(project, user, create=True) as scope:
        agent = await service.create_agent(
            scope.session,
            scope.principal,
            scope.project_id,
            name=name,
            fields=fields,
            description=description,
            slug=slug,
        )
    console.print(f"created agent {agent.slug} {agent.id} (revision {agent.revision})")


@agent_app.command("list")
@async_command
async def list_agents(project: str = PROJECT, user: str | None = USER) -> None:
    """List the project's agents and which variant each serves."""
    from promptlooper.variants import service

    table = Table("slug", "name", "model", "revision", "active variant", "id")
    async with _scope(project, user) as scope:
        agents, _ = await service.list_agents(scope.session, scope.principal, scope.project_id)
        for agent in agents:
            active = await service.active_variant(scope.session, agent.id)
            table.add_row(
                agent.slug,
                agent.name,
                f"{agent.config['model_provider']}:{agent.config['model_name']}",
                str(agent.revision),
                active.slug if active else "-",
                str(agent.id),
            )
    console.print(table)


@agent_app.command("show")
@async_command
async def show_agent(
    slug: str = typer.Argument(...), project: str = PROJECT, user: str | None = USER
) -> None:
    """An agent's base config and its variants."""
    from promptlooper.variants import service

    async with _scope(project, user) as scope:
        agent = await _agent(scope, slug)
        variants = await service.list_variants(scope.session, scope.principal, agent.id)
    console.print(f"{agent.name} ({agent.slug}) {agent.id}  revision {agent.revision}")
    console.print(_config_table(agent.config))
    table = Table("variant", "active", "revision", "overrides", "id")
    for variant in variants:
        table.add_row(
            variant.slug,
            "yes" if variant.is_active else "",
            str(variant.revision),
            ", ".join(f"{k}={v!r}"[:40] for k, v in variant.overrides.items()) or "-",
            str(variant.id),
        )
    console.print(table)


@agent_app.command("update")
@async_command
async def update_agent(
    slug: str = typer.Argument(...),
    model: str | None = MODEL,
    assignments: list[str] | None = SET,
    name: str | None = typer.Option(None, "--name"),
    description: str | None = typer.Option(None, "--description", "-d"),
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """Change base config fields; an update that changes nothing records nothing."""
    from promptlooper.variants import service

    fields = parse_fields(assignments, model)
    async with _scope(project, user) as scope:
        agent = await _agent(scope, slug)
        before = agent.revision
        agent = await service.update_agent(
            scope.session,
            scope.principal,
            agent.id,
            fields=fields,
            name=name,
            description=description,
        )
    change = "unchanged" if agent.revision == before else f"now revision {agent.revision}"
    console.print(f"agent {agent.slug}: config {change}")


@agent_app.command("delete")
@async_command
async def delete_agent(
    slug: str = typer.Argument(...),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """Delete an agent with its variants, revisions and performance records."""
    from promptlooper.variants import service

    if not yes:
        typer.confirm(f"Delete agent {slug} and everything recorded for it?", abort=True)
    async with _scope(project, user) as scope:
        agent = await _agent(scope, slug)
        await service.delete_agent(scope.session, scope.principal, agent.id)
    console.print(f"deleted agent {slug}")


@agent_app.command("config")
@async_command
async def resolve_config(
    slug: str = typer.Argument(...),
    as_json: bool = JSON,
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """The config the agent serves now, with where each value comes from."""
    from promptlooper.variants import service

    async with _scope(project, user) as scope:
        found = await service.resolution(scope.session, await _agent(scope, slug))
    if as_json:
        _dump(
            {
                "source": found.source,
                "variant": found.variant.slug if found.variant else None,
                "revision": found.revision,
                "etag": found.etag,
                "config": found.config,
                "provenance": found.provenance,
            }
        )
        return
    served = f"variant {found.variant.slug}" if found.variant else "the agent's base config"
    console.print(f"{slug}: {served}, revision {found.revision}")
    console.print(_config_table(found.config, found.provenance))


@agent_app.command("revisions")
@async_command
async def list_revisions(
    slug: str = typer.Argument(...), project: str = PROJECT, user: str | None = USER
) -> None:
    """Every recorded change of the agent's base config and of its variants."""
    from promptlooper.variants import service

    async with _scope(project, user) as scope:
        agent = await _agent(scope, slug)
        revisions = await service.list_revisions(scope.session, scope.principal, agent.id)
        slugs = await _variant_slugs(scope, agent)
    table = Table("when", "of", "number", "changed", "id")
    for revision in revisions:
        table.add_row(
            f"{revision.created_at:%Y-%m-%d %H:%M:%S}",
            slugs.get(revision.variant_id, "?") if revision.variant_id else "agent",
            str(revision.number),
            ", ".join(revision.changed_fields) or "-",
            str(revision.id),
        )
    console.print(table)


@agent_app.command("rollback")
@async_command
async def rollback(
    slug: str = typer.Argument(...),
    revision_id: str = typer.Argument(..., help="A revision id from `agent revisions`."),
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """Re-apply an old revision (of the agent or of one variant) as a new revision."""
    import uuid

    from promptlooper.variants import service

    try:
        revision = uuid.UUID(revision_id)
    except ValueError as exc:
        raise Invalid(f"revision_id: not an id: {revision_id!r}") from exc
    async with _scope(project, user) as scope:
        agent = await _agent(scope, slug)
        agent, variant = await service.rollback(scope.session, scope.principal, agent.id, revision)
    target = f"variant {variant.slug}" if variant else f"agent {agent.slug}"
    console.print(f"{target} is at revision {(variant or agent).revision}")


@agent_app.command("activations")
@async_command
async def list_activations(
    slug: str = typer.Argument(...), project: str = PROJECT, user: str | None = USER
) -> None:
    """Who switched which variant on or off, when and why."""
    from promptlooper.variants import service

    async with _scope(project, user) as scope:
        agent = await _agent(scope, slug)
        events = await service.list_activations(scope.session, scope.principal, agent.id)
        slugs = await _variant_slugs(scope, agent)
    table = Table("when", "from", "to", "reason")
    for event in events:
        table.add_row(
            f"{event.created_at:%Y-%m-%d %H:%M:%S}",
            slugs.get(event.from_variant_id, "-") if event.from_variant_id else "base",
            slugs.get(event.to_variant_id, "-") if event.to_variant_id else "base",
            event.reason,
        )
    console.print(table)


@agent_app.command("metrics")
@async_command
async def metrics(
    slug: str = typer.Argument(...),
    as_json: bool = JSON,
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """Per-variant performance over the last 30 days, with 95 % intervals."""
    from dataclasses import asdict

    from promptlooper.variants import performance

    async with _scope(project, user) as scope:
        agent = await _agent(scope, slug)
        _, _, summaries, slugs = await performance.metrics(scope.session, scope.principal, agent.id)
    if as_json:
        _dump([{"variant": slugs.get(k) if k else None, **asdict(s)} for k, s in summaries.items()])
        return
    table = Table("variant", "n", "success", "95% CI", "p50 ms", "p95 ms", "quality", "95% CI")
    for key, summary in summaries.items():
        table.add_row(
            slugs.get(key, "?") if key else "base",
            str(summary.n),
            _pct(summary.success_rate),
            f"{_pct(summary.success_ci[0])}–{_pct(summary.success_ci[1])}",
            _num(summary.latency_p50_ms),
            _num(summary.latency_p95_ms),
            _num(summary.quality_mean, 3),
            f"{_num(summary.quality_ci[0], 3)}–{_num(summary.quality_ci[1], 3)}",
        )
    console.print(table)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@agent_app.command("sweep")
def sweep(
    slug: str = typer.Argument(...),
    file: Path = typer.Argument(..., help="Sweep file: what to vary around the agent's config."),
    variant: str | None = typer.Option(None, "--variant", "-v", help="Start from this variant."),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c", min=1, max=4096),
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """Sweep around the agent's config (or a variant's) and run it; budget fields apply."""
    import asyncio

    from promptlooper.cli.sweeps import run_sweep
    from promptlooper.sweeps.providers import ProviderPolicy
    from promptlooper.sweeps.spec import load_sweep_file
    from promptlooper.variants import promotion

    document = load_sweep_file(file)
    settings = load_settings()

    async def create() -> Any:
        async with _scope(project, user) as scope:
            agent = await _agent(scope, slug)
            chosen = (await _variant(scope, agent, variant)).id if variant else None
            experiment = await promotion.sweep_of(
                scope.session,
                scope.principal,
                agent.id,
                document,
                variant_id=chosen,
                policy=ProviderPolicy.workstation(settings),
                max_runs=settings.sweep_max_runs,
                allow_python=True,
            )
            return experiment.id

    run_sweep(settings, experiment_id=asyncio.run(create()), concurrency=concurrency)


# --- variants -------------------------------------------------------------------------------


@variant_app.command("create")
@async_command
async def create_variant(
    agent: str = typer.Argument(..., help="Agent slug."),
    name: str = typer.Argument(...),
    model: str | None = MODEL,
    assignments: list[str] | None = SET,
    description: str = typer.Option("", "--description", "-d"),
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """A variant overriding exactly the fields given; everything else follows the agent."""
    from promptlooper.variants import service

    fields = parse_fields(assignments, model)
    async with _scope(project, user) as scope:
        owner = await _agent(scope, agent)
        created = await service.create_variant(
            scope.session,
            scope.principal,
            owner.id,
            name=name,
            overrides=fields,
            description=description,
        )
    console.print(f"created variant {created.slug} {created.id}")


@variant_app.command("clone")
@async_command
async def clone_variant(
    agent: str = typer.Argument(..., help="Agent slug."),
    name: str = typer.Argument(...),
    source: str | None = typer.Option(None, "--from", help="Variant to copy (default: the agent)."),
    model: str | None = MODEL,
    assignments: list[str] | None = SET,
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """Copy a variant (or the agent's base) with some fields changed."""
    from promptlooper.variants import service

    fields = parse_fields(assignments, model)
    async with _scope(project, user) as scope:
        owner = await _agent(scope, agent)
        source_id = (await _variant(scope, owner, source)).id if source else None
        created = await service.clone_variant(
            scope.session, scope.principal, owner.id, source_id, name=name, overrides=fields
        )
    console.print(f"created variant {created.slug} {created.id} from {source or 'the agent'}")


@variant_app.command("list")
@async_command
async def list_variants(
    agent: str = typer.Argument(..., help="Agent slug."),
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """The agent's variants with their effective configs' key fields."""
    from promptlooper.variants import service

    async with _scope(project, user) as scope:
        owner = await _agent(scope, agent)
        variants = await service.list_variants(scope.session, scope.principal, owner.id)
        configs = [await service.effective_config(scope.session, owner, v) for v in variants]
    table = Table("variant", "active", "model", "temperature", "overrides", "revision", "id")
    for variant, config in zip(variants, configs, strict=True):
        table.add_row(
            variant.slug,
            "yes" if variant.is_active else "",
            f"{config['model_provider']}:{config['model_name']}",
            str(config["temperature"]),
            ", ".join(variant.overrides) or "-",
            str(variant.revision),
            str(variant.id),
        )
    console.print(table)


@variant_app.command("update")
@async_command
async def update_variant(
    agent: str = typer.Argument(..., help="Agent slug."),
    variant: str = typer.Argument(..., help="Variant slug or id."),
    model: str | None = MODEL,
    assignments: list[str] | None = SET,
    inherit: list[str] | None = typer.Option(None, "--inherit", help="Stop overriding a field."),
    name: str | None = typer.Option(None, "--name"),
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """Override more fields, or hand some back to the agent with --inherit."""
    from promptlooper.variants import service
    from promptlooper.variants.config import CONFIG_FIELDS

    fields = parse_fields(assignments, model)
    for field in inherit or []:
        if field not in CONFIG_FIELDS:
            raise Invalid(f"--inherit: unknown field {field!r}; fields: {', '.join(CONFIG_FIELDS)}")
    async with _scope(project, user) as scope:
        owner = await _agent(scope, agent)
        target = await _variant(scope, owner, variant)
        before = target.revision
        target = await service.update_variant(
            scope.session,
            scope.principal,
            owner.id,
            target.id,
            fields=fields,
            inherit=list(inherit or []),
            name=name,
        )
    change = "unchanged" if target.revision == before else f"now revision {target.revision}"
    console.print(f"variant {target.slug}: {change}")


@variant_app.command("activate")
@async_command
async def activate(
    agent: str = typer.Argument(..., help="Agent slug."),
    variant: str = typer.Argument(..., help="Variant slug or id."),
    reason: str = typer.Option("", "--reason", "-r"),
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """Serve this variant (the previously active one stops)."""
    from promptlooper.variants import service

    async with _scope(project, user) as scope:
        owner = await _agent(scope, agent)
        target = await _variant(scope, owner, variant)
        await service.activate(scope.session, scope.principal, owner.id, target.id, reason=reason)
    console.print(f"{agent} now serves variant {target.slug}")


@variant_app.command("deactivate")
@async_command
async def deactivate(
    agent: str = typer.Argument(..., help="Agent slug."),
    reason: str = typer.Option("", "--reason", "-r"),
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """Serve the agent's base config again."""
    from promptlooper.variants import service

    async with _scope(project, user) as scope:
        owner = await _agent(scope, agent)
        was = await service.deactivate(scope.session, scope.principal, owner.id, reason=reason)
    console.print(f"{agent} serves its base config" + (f" (was {was.slug})" if was else ""))


@variant_app.command("delete")
@async_command
async def delete_variant(
    agent: str = typer.Argument(..., help="Agent slug."),
    variant: str = typer.Argument(..., help="Variant slug or id."),
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """Delete a variant (the active one is deactivated first, and that is recorded)."""
    from promptlooper.variants import service

    async with _scope(project, user) as scope:
        owner = await _agent(scope, agent)
        target = await _variant(scope, owner, variant)
        await service.delete_variant(scope.session, scope.principal, owner.id, target.id)
    console.print(f"deleted variant {target.slug}")


@variant_app.command("promote")
@async_command
async def promote(
    agent: str = typer.Argument(..., help="Agent slug."),
    experiment_id: str = typer.Argument(..., help="The sweep's experiment id."),
    config_hash: str | None = typer.Option(
        None, "--config", help="A config hash, or a prefix naming one config (default: the best)."
    ),
    name: str | None = typer.Option(None, "--name"),
    project: str = PROJECT,
    user: str | None = USER,
) -> None:
    """A new variant from a sweep's best config (or the given one)."""
    import uuid

    from promptlooper.variants import promotion

    try:
        experiment = uuid.UUID(experiment_id)
    except ValueError as exc:
        raise Invalid(f"experiment_id: not an id: {experiment_id!r}") from exc
    async with _scope(project, user) as scope:
        owner = await _agent(scope, agent)
        variant, unmapped = await promotion.from_experiment(
            scope.session, scope.principal, owner.id, experiment, config_hash=config_hash, name=name
        )
    console.print(f"created variant {variant.slug} {variant.id}")
    if unmapped:
        console.print(f"not carried over (no agent field): {', '.join(unmapped)}")
