"""The agents and variants pages: what each shows, what each action changes, and what they
refuse (another user's agent, a missing CSRF token, a stale edit form, bad values)."""

from __future__ import annotations

import html
import re
import uuid

import httpx
from fastapi import FastAPI

from tests.web.conftest import PASSWORD, UiClient, statements

EVIL = '<script>alert(1)</script>" onmouseover="x'
NOT_FOUND = "There is nothing here, or it is not yours to see."


def _notice(response: httpx.Response) -> None:
    assert response.status_code == 303, response.text


async def _project(ui: UiClient, name: str = "Triage") -> str:
    await ui.get("/ui/")
    response = await ui.post("/ui/projects", {"name": name})
    _notice(response)
    return response.headers["location"].rsplit("/", 1)[-1]


async def _agent(ui: UiClient, project_id: str, name: str = "Support bot", **config: str) -> str:
    await ui.get(f"/ui/projects/{project_id}/agents/new")
    fields = {
        "name": name,
        "model_provider": "openai",
        "model_name": "gpt-4o-mini",
        "system_prompt": "You are helpful.",
        "temperature": "0.2",
    } | config
    response = await ui.post(f"/ui/projects/{project_id}/agents/new", fields)
    _notice(response)
    return response.headers["location"].rsplit("/", 1)[-1]


async def _variant(ui: UiClient, agent_id: str, name: str, **overrides: str) -> str:
    await ui.get(f"/ui/agents/{agent_id}/variants/new")
    response = await ui.post(f"/ui/agents/{agent_id}/variants/new", {"name": name, **overrides})
    _notice(response)
    return response.headers["location"].rsplit("/", 1)[-1]


async def _follow(ui: UiClient, response: httpx.Response) -> str:
    _notice(response)
    return (await ui.get(response.headers["location"])).text


def _text(page: str) -> str:
    """The page's text with tags dropped and whitespace collapsed, entities decoded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


async def test_agents_list_teaches_when_empty_and_shows_what_each_agent_serves(ui: UiClient):
    project_id = await _project(ui)
    empty = await ui.get(f"/ui/projects/{project_id}/agents")
    assert empty.status_code == 200
    assert "No agents yet" in empty.text
    assert f'href="/ui/projects/{project_id}/agents/new"' in empty.text

    agent_id = await _agent(ui, project_id)
    variant_id = await _variant(ui, agent_id, "careful", temperature="0.1")
    listed = _text((await ui.get(f"/ui/projects/{project_id}/agents")).text)
    assert "Support bot" in listed
    assert "base config" in listed

    await ui.get(f"/ui/agents/{agent_id}")
    await ui.post(f"/ui/agents/{agent_id}/variants/{variant_id}/activate", {"reason": ""})
    listed = _text((await ui.get(f"/ui/projects/{project_id}/agents")).text)
    assert "active careful (revision 1)" in listed


async def test_new_agent_form_keeps_typed_values_and_puts_errors_beside_fields(ui: UiClient):
    project_id = await _project(ui)
    await ui.get(f"/ui/projects/{project_id}/agents/new")
    response = await ui.post(
        f"/ui/projects/{project_id}/agents/new",
        {
            "name": "Kept name",
            "model_provider": "nonesuch",
            "model_name": "m",
            "temperature": "7",
            "system_prompt": "Typed {{ prompt",
        },
    )
    assert response.status_code == 422
    assert 'value="Kept name"' in response.text
    assert 'id="e-model_provider"' in response.text
    assert "unknown provider" in response.text
    assert 'id="e-temperature"' in response.text
    assert 'value="7"' in response.text
    assert "Typed {{ prompt</textarea>" in response.text
    listed = await ui.get(f"/ui/projects/{project_id}/agents")
    assert "No agents yet" in listed.text


async def test_duplicate_agent_name_is_an_error_beside_the_name(ui: UiClient):
    project_id = await _project(ui)
    await _agent(ui, project_id, "Twin")
    await ui.get(f"/ui/projects/{project_id}/agents/new")
    response = await ui.post(
        f"/ui/projects/{project_id}/agents/new",
        {"name": "Twin", "model_provider": "openai", "model_name": "x"},
    )
    assert response.status_code == 422
    assert 'id="e-name"' in response.text
    assert "already has an agent named" in response.text


async def test_agent_page_marks_overrides_active_variant_and_activation_reason(ui: UiClient):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    careful = await _variant(ui, agent_id, "careful", temperature="0.05")
    await _variant(ui, agent_id, "plain")
    page = (await ui.get(f"/ui/agents/{agent_id}")).text
    assert "Serves its base config (revision 1)" in _text(page)
    assert '<mark class="changed" title="overridden by this variant">0.05</mark>' in page
    assert "(base: 0.2)" in page
    assert "No overrides: same as the base config." in page
    assert "Deleting variant careful removes it and its 1 revision(s) for good;" in page

    reply = await ui.post(
        f"/ui/agents/{agent_id}/variants/{careful}/activate", {"reason": "fewer refunds"}
    )
    page = await _follow(ui, reply)
    assert "Variant careful activated" in page
    text = _text(page)
    assert "Serves variant careful active" in text
    assert "base config careful fewer refunds" in text  # the log: from, to, reason

    page = await _follow(ui, await ui.post(f"/ui/agents/{agent_id}/variants/{careful}/deactivate"))
    assert "Variant careful deactivated; the agent serves its base config." in page
    assert "careful base config no reason given" in _text(page)


async def test_variant_page_shows_where_each_value_comes_from_and_metrics(
    ui: UiClient, app: FastAPI
):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    variant_id = await _variant(ui, agent_id, "bold", temperature="0.9")
    empty = _text((await ui.get(f"/ui/agents/{agent_id}/variants/{variant_id}")).text)
    assert "temperature 0.9 this variant (overrides the base)" in empty
    assert "system_prompt Copy You are helpful. agent's base config" in empty
    assert "max_tokens not set default (not set)" in empty
    assert "No calls logged for this variant" in empty

    records = [
        {"variant_id": variant_id, "latency_ms": 100 + i, "success": i % 4 != 0, "quality": 0.8}
        for i in range(8)
    ]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as api:
        token = await _api_token(api)
        sent = await api.post(
            f"/api/agents/{agent_id}/performance",
            json=records,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert sent.status_code == 201, sent.text
    shown = _text((await ui.get(f"/ui/agents/{agent_id}/variants/{variant_id}")).text)
    assert "Calls 8" in shown
    assert "Success rate 75.0 %" in shown


async def _api_token(api: httpx.AsyncClient) -> str:
    response = await api.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def test_clone_starts_from_the_source_and_keeps_its_origin(ui: UiClient):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    source = await _variant(ui, agent_id, "short", max_tokens="50", temperature="0.4")
    form = (await ui.get(f"/ui/agents/{agent_id}/variants/new?from={source}")).text
    assert "Clone short" in form
    assert 'value="short copy"' in form
    assert 'value="50"' in form
    response = await ui.post(
        f"/ui/agents/{agent_id}/variants/new",
        {"from": source, "name": "shorter", "max_tokens": "20", "temperature": "0.4"},
    )
    page = await _follow(ui, response)
    assert "Variant shorter cloned from short" in page
    text = _text(page)
    assert "max_tokens 20 this variant" in text
    assert "temperature 0.4 this variant" in text
    assert "The agent serves this variant now." not in text
    assert "Inactive: the agent does not serve it until it is activated. Revision 1;" in text
    assert (
        f'Cloned from variant <a href="/ui/agents/{agent_id}/variants/{source}">short</a>' in page
    )


async def test_a_clone_names_its_source_and_says_when_it_was_deleted(ui: UiClient):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    source = await _variant(ui, agent_id, "careful <b>v1</b>", max_tokens="50")
    await ui.get(f"/ui/agents/{agent_id}/variants/new?from={source}")
    response = await ui.post(
        f"/ui/agents/{agent_id}/variants/new", {"from": source, "name": "v2", "max_tokens": "50"}
    )
    clone_url = response.headers["location"]
    page = await _follow(ui, response)
    assert (
        f'Cloned from variant <a href="/ui/agents/{agent_id}/variants/{source}">'
        "careful &lt;b&gt;v1&lt;/b&gt;</a> <small><code>careful-b-v1-b</code></small>"
    ) in page
    await ui.get(f"/ui/agents/{agent_id}")
    _notice(await ui.post(f"/ui/agents/{agent_id}/variants/{source}/delete"))
    page = (await ui.get(clone_url)).text
    assert "Cloned from a variant that has since been deleted." in page
    assert f"/variants/{source}" not in page


async def test_edit_changes_only_what_was_touched_and_can_hand_a_field_back(ui: UiClient):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    variant_id = await _variant(ui, agent_id, "v", temperature="0.7", max_tokens="99")
    url = f"/ui/agents/{agent_id}/variants/{variant_id}/edit"
    form = (await ui.get(url)).text
    version = re.search(r'name="version" value="([^"]+)"', form)[1]
    assert 'name="inherit_system_prompt" checked' in form
    assert 'name="inherit_temperature">' in form

    page = await _follow(
        ui,
        await ui.post(
            url,
            {
                "version": version,
                "name": "v",
                "description": "",
                "temperature": "0.7",
                "max_tokens": "99",
                "inherit_temperature": "on",
                "inherit_system_prompt": "on",
            },
        ),
    )
    assert "Variant v saved as revision 2." in page
    text = _text(page)
    assert "temperature 0.2 agent's base config" in text
    assert "max_tokens 99 this variant" in text
    assert "Roll back to 1" in page

    stale = await ui.post(url, {"version": version, "name": "v", "max_tokens": "5"})
    assert stale.status_code == 409
    assert "changed since this form was loaded; nothing was saved" in stale.text
    text = _text((await ui.get(f"/ui/agents/{agent_id}/variants/{variant_id}")).text)
    assert "max_tokens 99 this variant" in text


async def test_edit_errors_keep_typed_values_and_save_nothing(ui: UiClient):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    variant_id = await _variant(ui, agent_id, "v", temperature="0.7")
    url = f"/ui/agents/{agent_id}/variants/{variant_id}/edit"
    form = (await ui.get(url)).text
    version = re.search(r'name="version" value="([^"]+)"', form)[1]
    response = await ui.post(
        url, {"version": version, "name": "renamed", "temperature": "9", "max_tokens": "-1"}
    )
    assert response.status_code == 422
    assert 'value="renamed"' in response.text
    assert 'value="9"' in response.text
    assert 'id="e-temperature"' in response.text
    assert 'id="e-max_tokens"' in response.text
    emptied = await ui.post(url, {"version": version, "name": "v", "temperature": ""})
    assert emptied.status_code == 422
    assert "tick “inherit”" in html.unescape(emptied.text)
    text = _text((await ui.get(f"/ui/agents/{agent_id}/variants/{variant_id}")).text)
    assert "temperature 0.7 this variant" in text
    assert "renamed" not in text


async def test_rollback_reapplies_an_old_revision(ui: UiClient):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    variant_id = await _variant(ui, agent_id, "v", temperature="0.7")
    url = f"/ui/agents/{agent_id}/variants/{variant_id}/edit"
    version = re.search(r'name="version" value="([^"]+)"', (await ui.get(url)).text)[1]
    await ui.post(url, {"version": version, "name": "v", "temperature": "1.5"})
    page = (await ui.get(f"/ui/agents/{agent_id}/variants/{variant_id}")).text
    first = re.search(r'name="revision_id" value="([^"]+)"', page)[1]
    page = await _follow(
        ui,
        await ui.post(
            f"/ui/agents/{agent_id}/variants/{variant_id}/rollback", {"revision_id": first}
        ),
    )
    assert "Variant v rolled back: its config is now revision 3." in page
    assert "temperature 0.7 this variant" in _text(page)
    bad = await ui.post(
        f"/ui/agents/{agent_id}/variants/{variant_id}/rollback", {"revision_id": "nope"}
    )
    assert bad.status_code == 404


async def test_delete_variant_and_agent_say_what_changed(ui: UiClient):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    variant_id = await _variant(ui, agent_id, "doomed")
    await ui.get(f"/ui/agents/{agent_id}")
    await ui.post(f"/ui/agents/{agent_id}/variants/{variant_id}/activate")
    page = await _follow(ui, await ui.post(f"/ui/agents/{agent_id}/variants/{variant_id}/delete"))
    assert "Variant doomed deleted. It was active: the agent serves its base config now." in page
    assert "No variants yet" in page
    missing = await ui.get(f"/ui/agents/{agent_id}/variants/{variant_id}")
    assert missing.status_code == 404
    assert NOT_FOUND in missing.text
    page = await _follow(ui, await ui.post(f"/ui/agents/{agent_id}/delete"))
    assert "Agent Support bot deleted" in page
    assert "No agents yet" in page
    assert (await ui.get(f"/ui/agents/{agent_id}")).status_code == 404


async def test_compare_shows_the_config_diff_and_marks_only_clear_winners(
    ui: UiClient, app: FastAPI
):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    good = await _variant(ui, agent_id, "good", temperature="0.1")
    bad = await _variant(ui, agent_id, "bad", system_prompt="Be terse.")
    url = f"/ui/agents/{agent_id}/compare?variant={good}&variant={bad}&window=7d"
    page = (await ui.get(url)).text
    text = _text(page)
    assert "temperature differs 0.2 0.1 0.2 (inherited)" in text
    assert "model_name same gpt-4o-mini" in text
    assert "+Be terse." in page
    assert "No calls logged in this window." in page
    assert "Not enough data to compare" in page
    assert "▲ better</strong>" not in page

    records = [{"variant_id": good, "success": True, "quality": 0.9} for _ in range(40)]
    records += [{"variant_id": bad, "success": i % 2 == 0, "quality": 0.2} for i in range(40)]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as api:
        token = await _api_token(api)
        sent = await api.post(
            f"/api/agents/{agent_id}/performance",
            json=records,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert sent.status_code == 201
    page = (await ui.get(url)).text
    text = _text(page)
    # Quality comes first after the variant's name: the answer before the counts.
    assert "Variant Quality Success rate Calls" in text
    good_row = (
        r"good 0\.900 \[0\.900–0\.900\] n=40 ▲ better 100\.0 % \[\d+\.\d–100\.0\] ▲ better 40 "
    )
    assert re.search(good_row, text), text
    assert "bad 0.200 [0.200–0.200] n=40 50.0 % [35.2–64.8] 40" in text
    assert "good has the clearly higher success rate; good has the clearly higher quality" in text
    assert page.count("▲ better</strong>") == 2  # success rate and quality, both of "good"

    assert (await ui.get(f"/ui/agents/{agent_id}/compare?window=5y")).status_code == 400
    unknown = await ui.get(f"/ui/agents/{agent_id}/compare?variant={uuid.uuid4()}")
    assert unknown.status_code == 404


async def test_names_and_config_text_are_escaped_everywhere(ui: UiClient):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id, EVIL, system_prompt=EVIL)
    variant_id = await _variant(ui, agent_id, EVIL + "v", user_prompt_template=EVIL)
    await ui.get(f"/ui/agents/{agent_id}")
    await ui.post(f"/ui/agents/{agent_id}/variants/{variant_id}/activate", {"reason": EVIL})
    for url in (
        f"/ui/projects/{project_id}/agents",
        f"/ui/agents/{agent_id}",
        f"/ui/agents/{agent_id}/variants/{variant_id}",
        f"/ui/agents/{agent_id}/variants/{variant_id}/edit",
        f"/ui/agents/{agent_id}/variants/new?from={variant_id}",
        f"/ui/agents/{agent_id}/compare",
    ):
        page = (await ui.get(url)).text
        assert "<script>alert" not in page, url
        assert '" onmouseover="' not in page, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, url


async def test_csrf_refused_and_nothing_changes(ui: UiClient):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    variant_id = await _variant(ui, agent_id, "v")
    base = f"/ui/agents/{agent_id}/variants/{variant_id}"
    for url, data in (
        (f"/ui/projects/{project_id}/agents/new", {"name": "x", "model_provider": "openai"}),
        (f"/ui/agents/{agent_id}/variants/new", {"name": "other"}),
        (f"{base}/edit", {"name": "renamed"}),
        (f"{base}/activate", {}),
        (f"{base}/delete", {}),
        (f"/ui/agents/{agent_id}/delete", {}),
    ):
        response = await ui.post(url, data, csrf="")
        assert response.status_code == 403, url
    page = _text((await ui.get(f"/ui/agents/{agent_id}")).text)
    assert "Serves its base config" in page
    assert "v v inactive" in page
    assert "other" not in page
    assert "renamed" not in page


async def test_another_users_agent_is_the_404_page_and_stays_unchanged(
    ui: UiClient, ui_other: UiClient
):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    variant_id = await _variant(ui, agent_id, "v")
    base = f"/ui/agents/{agent_id}/variants/{variant_id}"
    for url in (
        f"/ui/projects/{project_id}/agents",
        f"/ui/projects/{project_id}/agents/new",
        f"/ui/agents/{agent_id}",
        f"/ui/agents/{agent_id}/variants/new",
        f"/ui/agents/{agent_id}/compare",
        base,
        f"{base}/edit",
    ):
        response = await ui_other.get(url)
        assert response.status_code == 404, url
        assert NOT_FOUND in response.text
    await ui_other.get("/ui/")
    for url, data in (
        (f"/ui/projects/{project_id}/agents/new", {"name": "x", "model_provider": "openai"}),
        (f"/ui/agents/{agent_id}/variants/new", {"name": "other"}),
        (f"{base}/edit", {"name": "renamed"}),
        (f"{base}/activate", {}),
        (f"{base}/deactivate", {}),
        (f"{base}/rollback", {"revision_id": str(uuid.uuid4())}),
        (f"{base}/delete", {}),
        (f"/ui/agents/{agent_id}/delete", {}),
    ):
        response = await ui_other.post(url, data)
        assert response.status_code == 404, url
    page = _text((await ui.get(f"/ui/agents/{agent_id}")).text)
    assert "Serves its base config" in page
    assert "v v inactive" in page


async def test_unknown_and_malformed_ids_are_the_404_page(ui: UiClient):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    for url in (
        f"/ui/agents/{uuid.uuid4()}",
        "/ui/agents/not-a-uuid",
        f"/ui/projects/{uuid.uuid4()}/agents",
        f"/ui/agents/{agent_id}/variants/{uuid.uuid4()}",
        f"/ui/agents/{agent_id}/variants/{uuid.uuid4()}/edit",
        f"/ui/agents/{agent_id}/variants/new?from={uuid.uuid4()}",
    ):
        response = await ui.get(url)
        assert response.status_code == 404, url
        assert NOT_FOUND in response.text


async def test_query_count_does_not_grow_with_variants(ui: UiClient, app: FastAPI):
    project_id = await _project(ui)
    counts: dict[int, dict[str, int]] = {}
    for size in (3, 30):
        agent_id = await _agent(ui, project_id, f"agent {size}")
        ids = [await _variant(ui, agent_id, f"v{i}", temperature="0.5") for i in range(size)]
        await ui.get(f"/ui/agents/{agent_id}")
        await ui.post(f"/ui/agents/{agent_id}/variants/{ids[0]}/activate")
        urls = {
            "agent": f"/ui/agents/{agent_id}",
            "list": f"/ui/projects/{project_id}/agents",
            "compare": f"/ui/agents/{agent_id}/compare",
            "variant": f"/ui/agents/{agent_id}/variants/{ids[0]}",
        }
        counts[size] = {}
        for name, url in urls.items():
            with statements(app) as seen:
                assert (await ui.get(url)).status_code == 200
            counts[size][name] = len(seen)
    assert counts[3] == counts[30], counts


async def test_agents_list_pages_by_fifty(ui: UiClient, app: FastAPI):
    project_id = await _project(ui)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as api:
        headers = {"Authorization": f"Bearer {await _api_token(api)}"}
        for i in range(52):
            made = await api.post(
                f"/api/projects/{project_id}/agents",
                json={"name": f"agent {i:02d}", "model_provider": "mock", "model_name": "m"},
                headers=headers,
            )
            assert made.status_code == 201
    first = _text((await ui.get(f"/ui/projects/{project_id}/agents")).text)
    assert "52 agents" in first
    assert "1–50 of 52 Next →" in first
    assert "agent 49" in first
    assert "agent 50" not in first
    second = _text((await ui.get(f"/ui/projects/{project_id}/agents?page=2")).text)
    assert "← Previous 51–52 of 52" in second
    assert "agent 50" in second
    assert "agent 00" not in second


async def test_an_override_to_not_set_survives_an_untouched_edit(ui: UiClient, app: FastAPI):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    variant_id = await _variant(ui, agent_id, "v")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as api:
        patched = await api.patch(
            f"/api/agents/{agent_id}/variants/{variant_id}",
            json={"temperature": None},
            headers={"Authorization": f"Bearer {await _api_token(api)}"},
        )
        assert patched.status_code == 200
    url = f"/ui/agents/{agent_id}/variants/{variant_id}/edit"
    version = re.search(r'name="version" value="([^"]+)"', (await ui.get(url)).text)[1]
    page = await _follow(ui, await ui.post(url, {"version": version, "name": "v"}))
    assert "Variant v saved; its config did not change." in page
    assert "temperature not set this variant" in _text(page)


async def test_a_prompt_sent_back_with_browser_line_breaks_is_stored_as_it_was_read(
    ui: UiClient, app
):
    from promptlooper.variants.models import Agent, Variant

    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id, system_prompt="Line one.\r\nLine two.")
    # A clone of the base with the prompt field sent back untouched, as a browser does.
    await ui.get(f"/ui/agents/{agent_id}/variants/new")
    cloned = await ui.post(
        f"/ui/agents/{agent_id}/variants/new",
        {"name": "same", "system_prompt": "Line one.\r\nLine two."},
    )
    _notice(cloned)

    async with app.state.sessionmaker() as session:
        agent = await session.get(Agent, uuid.UUID(agent_id))
        assert agent is not None
        assert agent.config["system_prompt"] == "Line one.\nLine two."
        variant_id = uuid.UUID(cloned.headers["location"].rsplit("/", 1)[-1])
        variant = await session.get(Variant, variant_id)
        assert variant is not None
        assert variant.overrides["system_prompt"] == agent.config["system_prompt"]


def _version(page: str) -> str:
    found = re.search(r'name="version" value="([^"]+)"', page)
    assert found, "the form carries no version"
    return found[1]


async def test_edit_base_config_saves_what_changed_and_variants_keep_their_overrides(
    ui: UiClient,
):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    follows = await _variant(ui, agent_id, "follows", max_tokens="50")
    keeps = await _variant(ui, agent_id, "keeps", temperature="0.9")
    agent_page = (await ui.get(f"/ui/agents/{agent_id}")).text
    assert f'href="/ui/agents/{agent_id}/edit">Edit base config</a>' in agent_page

    url = f"/ui/agents/{agent_id}/edit"
    form = (await ui.get(url)).text
    assert 'value="0.2"' in form
    assert ">You are helpful.</textarea>" in form
    version = _version(form)
    fields = {
        "version": version,
        "name": "Support bot",
        "description": "",
        "model_provider": "openai",
        "model_name": "gpt-4o-mini",
        "system_prompt": "You are helpful.",
        "temperature": "0.6",
    }
    page = await _follow(ui, await ui.post(url, fields))
    assert "Base config of Support bot saved as revision 2" in page
    text = _text(page)
    assert "Base config revision 2" in text
    assert "Temperature 0.6" in text
    assert "temperature = 0.9 (base: 0.6)" in text  # the override stays
    follows_page = _text((await ui.get(f"/ui/agents/{agent_id}/variants/{follows}")).text)
    assert "temperature 0.6 agent's base config" in follows_page
    keeps_page = _text((await ui.get(f"/ui/agents/{agent_id}/variants/{keeps}")).text)
    assert "temperature 0.9 this variant (overrides the base)" in keeps_page

    untouched = await ui.post(url, fields | {"version": _version((await ui.get(url)).text)})
    assert "Agent Support bot saved; its base config did not change." in await _follow(
        ui, untouched
    )

    # A form loaded before that save is refused whole.
    stale = await ui.post(url, fields | {"temperature": "1.5"})
    assert stale.status_code == 409
    assert "changed since this form was loaded; nothing was saved" in stale.text
    assert 'value="1.5"' in stale.text  # what was typed stays
    assert "Temperature 0.6" in _text((await ui.get(f"/ui/agents/{agent_id}")).text)


async def test_edit_base_config_errors_beside_fields_and_nothing_saved(ui: UiClient):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id, system_prompt=EVIL)
    url = f"/ui/agents/{agent_id}/edit"
    form = (await ui.get(url)).text
    assert "<script>alert(1)" not in form
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in form
    fields = {
        "version": _version(form),
        "name": "Support bot",
        "model_provider": "openai",
        "model_name": "",
        "temperature": "7",
    }
    refused = await ui.post(url, fields)
    assert refused.status_code == 422
    assert 'id="e-temperature"' in refused.text
    assert 'value="7"' in refused.text
    blank_model = await ui.post(url, fields | {"temperature": "0.3"})
    assert blank_model.status_code == 422
    assert '<small class="error" id="e-model_name">an agent needs a model name' in blank_model.text
    page = _text((await ui.get(f"/ui/agents/{agent_id}")).text)
    assert "Base config revision 1" in page
    assert "Temperature 0.2" in page

    other = await ui.post(url, fields | {"temperature": "0.3"}, csrf="")
    assert other.status_code == 403


async def test_base_config_revisions_roll_back(ui: UiClient, ui_other: UiClient):
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    variant_id = await _variant(ui, agent_id, "v", temperature="0.7")
    url = f"/ui/agents/{agent_id}/edit"
    fields = {
        "version": _version((await ui.get(url)).text),
        "name": "Support bot",
        "model_provider": "openai",
        "model_name": "gpt-4o",
        "temperature": "1.1",
    }
    await _follow(ui, await ui.post(url, fields))
    page = (await ui.get(f"/ui/agents/{agent_id}")).text
    assert "Revisions of the base config (2)" in page
    assert "Roll back to 1" in page
    first = re.search(
        r'action="/ui/agents/[^"]+/rollback">\s*<input[^>]+>\s*'
        r'<input type="hidden" name="revision_id" value="([^"]+)">',
        page,
    )
    assert first, page
    rolled = await _follow(
        ui, await ui.post(f"/ui/agents/{agent_id}/rollback", {"revision_id": first[1]})
    )
    assert "Base config of Support bot rolled back: it is now revision 3." in rolled
    text = _text(rolled)
    assert "Temperature 0.2" in text
    assert "Model name gpt-4o-mini" in text
    assert "system_prompt" in text  # revision 2 cleared the prompt; the changes are listed
    assert "temperature = 0.7" in text  # the variant keeps its override

    # A variant's revision is not the base's; another user's agent is the 404 page.
    edit = f"/ui/agents/{agent_id}/variants/{variant_id}/edit"
    version = _version((await ui.get(edit)).text)
    _notice(await ui.post(edit, {"version": version, "name": "v", "temperature": "0.8"}))
    variant_page = (await ui.get(f"/ui/agents/{agent_id}/variants/{variant_id}")).text
    variant_revision = re.search(r'name="revision_id" value="([^"]+)"', variant_page)[1]
    refused = await ui.post(f"/ui/agents/{agent_id}/rollback", {"revision_id": variant_revision})
    assert refused.status_code == 422
    assert "belongs to a variant" in refused.text
    assert "temperature 0.8 this variant" in _text(
        (await ui.get(f"/ui/agents/{agent_id}/variants/{variant_id}")).text
    )
    assert (
        await ui.post(f"/ui/agents/{agent_id}/rollback", {"revision_id": "nope"})
    ).status_code == 404
    await ui_other.get("/ui/")
    stolen = await ui_other.post(f"/ui/agents/{agent_id}/rollback", {"revision_id": first[1]})
    assert stolen.status_code == 404
    assert (await ui_other.get(url)).status_code == 404
    assert "Base config revision 3" in _text((await ui.get(f"/ui/agents/{agent_id}")).text)


async def test_a_huge_prompt_is_refused_beside_its_field_and_a_large_one_is_saved_and_shown(
    ui: UiClient,
):
    """200 kB is over a prompt's 100,000-character limit: a field error (422), the text kept,
    nothing saved, never a 500. Just under the limit is saved and the pages still render."""
    project_id = await _project(ui)
    agent_id = await _agent(ui, project_id)
    url = f"/ui/agents/{agent_id}/variants/new"
    await ui.get(url)
    huge = ("<b>line</b> " * 20_000)[:200_000]
    refused = await ui.post(url, {"name": "huge", "system_prompt": huge})
    assert refused.status_code == 422
    assert 'id="e-system_prompt"' in refused.text
    assert "at most 100000 characters" in refused.text
    assert html.escape(huge, quote=False) in refused.text  # what was typed is kept, escaped
    assert "<b>line</b>" not in refused.text
    assert "No variants yet" in (await ui.get(f"/ui/agents/{agent_id}")).text

    large = "x" * 99_000 + "\nthe end <script>"
    variant_id = await _variant(ui, agent_id, "large", system_prompt=large)
    page = await ui.get(f"/ui/agents/{agent_id}/variants/{variant_id}")
    assert page.status_code == 200
    assert "x" * 99_000 + "\nthe end &lt;script&gt;" in page.text
    form = await ui.get(f"/ui/agents/{agent_id}/variants/{variant_id}/edit")
    assert form.status_code == 200
    assert "the end &lt;script&gt;</textarea>" in form.text
    assert (await ui.get(f"/ui/agents/{agent_id}")).status_code == 200
    compare = await ui.get(f"/ui/agents/{agent_id}/compare?variant={variant_id}")
    assert compare.status_code == 200
