"""An experiment's page for adaptive searches: the eliminated configs, and ranges."""

from __future__ import annotations

import re

from fastapi import FastAPI

from tests.sweeps.test_search_optuna import tuning
from tests.sweeps.test_search_racing import racing, with_a_broken_config
from tests.web.conftest import UiClient
from tests.web.test_sweep_pages import create_sweep, make_project, run_sweep


async def test_a_race_shows_what_it_eliminated_and_why(ui: UiClient, app: FastAPI) -> None:
    project_id = await make_project(ui)
    experiment_id = await create_sweep(
        ui, project_id, racing({"good": 0.95, "close": 0.93, "bad": 0.1})
    )
    await run_sweep(ui, app, experiment_id)

    page = await ui.get(f"/ui/sweeps/{experiment_id}")
    section = page.text[page.text.index('id="eliminated"') :]
    section = section[: section.index("</table>")]

    assert page.status_code == 200
    assert "Eliminated <small" in page.text
    assert len(re.findall(r"<tr>\s*<td><a", section)) == 1
    assert "mock:bad" in section
    assert '<td class="num">20</td>' in section


async def test_a_finished_race_reads_finished_with_its_skipped_runs(
    ui: UiClient, app: FastAPI
) -> None:
    project_id = await make_project(ui)
    experiment_id = await create_sweep(
        ui, project_id, racing({"good": 0.95, "close": 0.93, "bad": 0.1})
    )
    await run_sweep(ui, app, experiment_id)

    page = await ui.get(f"/ui/sweeps/{experiment_id}")
    progress = page.text[page.text.index('id="progress"') :]
    progress = progress[: progress.index("</div>", progress.index('class="actions"')) + 6]
    text = re.sub(r"<[^>]+>", "", progress)
    counted = re.search(r"(\d+) completed \+ (\d+) skipped by the search", text)
    completed, skipped = (int(n) for n in counted.groups())

    assert page.status_code == 200
    assert completed + skipped == 240
    assert skipped > 0
    assert "of 240 runs" in text
    assert "Resume" not in progress
    assert f'value="{completed + skipped}"' in progress


async def test_a_config_whose_runs_all_failed_shows_why_it_was_eliminated(
    ui: UiClient, app: FastAPI
) -> None:
    project_id = await make_project(ui)
    experiment_id = await create_sweep(
        ui, project_id, with_a_broken_config(racing({"good": 0.95, "close": 0.93}))
    )
    await run_sweep(ui, app, experiment_id)

    page = await ui.get(f"/ui/sweeps/{experiment_id}")
    section = page.text[page.text.index('id="eliminated"') :]
    section = section[: section.index("</table>")]

    assert page.status_code == 200
    assert len(re.findall(r"<tr>\s*<td><a", section)) == 1
    assert "broken:down" in section
    assert "<td>all runs failed</td>" in section
    assert '<td class="num">n/a</td>' in section


async def test_a_tuning_sweep_shows_its_ranges(ui: UiClient, app: FastAPI) -> None:
    project_id = await make_project(ui)
    experiment_id = await create_sweep(ui, project_id, tuning(n_trials=3))

    page = await ui.get(f"/ui/sweeps/{experiment_id}")

    assert page.status_code == 200
    assert "64 to 512 <small" in page.text
    assert "0.0 to 1.5</td>" in page.text
    assert 'id="eliminated"' not in page.text
