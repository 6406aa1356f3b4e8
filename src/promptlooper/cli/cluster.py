"""``promptlooper ray status``: the Ray cluster sweeps run on, and what they have in flight."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from promptlooper.cli.common import (
    RayOption,
    console,
    err_console,
    join_cluster,
    load_settings,
    with_ray,
)
from promptlooper.errors import Invalid

ray_app = typer.Typer(help="The Ray cluster that sweeps run on.", no_args_is_help=True)


@ray_app.command("status")
def status(ray: str | None = RayOption) -> None:
    """Show the cluster's nodes and resources, the actors PromptLooper placed on it, and the
    batches each sweep has in flight."""
    settings = with_ray(load_settings(), ray)
    if not settings.ray_address:
        raise Invalid("no Ray cluster: set RAY_ADDRESS or pass --ray ADDRESS")
    from promptlooper.sweeps.engine.distributed import cluster_status

    join_cluster(settings)
    found = cluster_status(settings.ray_address)
    nodes = Table("node", "address", "alive", "CPUs", "GPUs", title="nodes")
    for node in found["nodes"]:
        nodes.add_row(
            node["node_id"][:12],
            node["address"],
            "yes" if node["alive"] else "no",
            f"{node['cpus']:g}",
            f"{node['gpus']:g}",
        )
    console.print(nodes)
    total, free = found["resources"], found["available"]
    kinds = [name for name in ("CPU", "GPU") if name in total]
    shown = ", ".join(f"{name} {free.get(name, 0):g}/{total[name]:g} free" for name in kinds)
    console.print(f"resources: {shown}", highlight=False)
    if found["actors"]:
        actors = Table("actor", "class", "node", "pid", title="PromptLooper's actors")
        for actor in found["actors"]:
            actors.add_row(actor["name"], actor["class"], actor["node_id"][:12], str(actor["pid"]))
        console.print(actors)
    if not found["sweeps"]:
        console.print("no sweep is executing on the cluster")
    now = time.time()
    for sweep in found["sweeps"]:
        console.print(
            f"sweep {sweep['experiment_id']}: {_batches(sweep['batches_in_flight'])} in flight "
            f"({sweep['runs_in_flight']} runs), {sweep['batches_finished']} finished",
            highlight=False,
        )
        batches = sweep["in_flight"]
        for batch in batches:
            console.print(
                f"  batch {batch['batch']}: {batch['runs']} runs on node {batch['node_id'][:12]}, "
                f"attempt {batch['attempt']}, {now - batch['since']:.0f} s",
                highlight=False,
            )


def _batches(count: int) -> str:
    return f"{count} batch" if count == 1 else f"{count} batches"


def print_cluster_work(address: str) -> None:
    """After a sweep on the cluster: where its batches ran, and how many were run again."""
    from promptlooper.sweeps.engine.distributed import stats

    done = sum(stats.batches_by_node.values())
    err_console.print(
        f"on the Ray cluster at {address}: {_batches(done)} over {len(stats.batches_by_node)} "
        f"node(s); {stats.retried} run again after losing a worker or node",
        highlight=False,
    )
