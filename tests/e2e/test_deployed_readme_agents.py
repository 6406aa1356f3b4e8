"""The README's agent walkthrough, run as written, in order, against ``promptlooper serve``.

The shell blocks of the README's "Agents and variants" section are taken from the README itself
(so the test follows the text when it changes) and run with bash, curl and jq, as a reader
would paste them; every call must answer 2xx.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deployed import Deployed

README = Path(__file__).parents[2] / "README.md"
README_URL = "http://127.0.0.1:8000"
STRICT_CURL = 'curl() { command curl --fail-with-body "$@"; }'
"""Any answer of 400 or more fails the walkthrough, as the reader would see it fail."""


def agent_walkthrough() -> list[str]:
    """The bash blocks from "## Agents and variants" up to the SDK, in the README's order."""
    text = README.read_text()
    start = text.index("## Agents and variants")
    section = text[start : text.index("### Python SDK", start)]
    return re.findall(r"```bash\n(.*?)```", section, re.DOTALL)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl, jq")
def test_the_readme_agent_walkthrough_runs_in_order(serve: Callable[..., Deployed]):
    server = serve()
    blocks = agent_walkthrough()
    with server.client() as http:
        project = http.post(
            "/api/projects", json={"name": "ticket-triage"}, headers=server.admin
        ).json()
        script = "\n".join(
            ["set -euo pipefail", STRICT_CURL, *blocks, 'echo "agent=$AGENT"']
        ).replace(README_URL, server.url)

        key = server.admin["X-Api-Key"]
        reader = {"PATH": "/usr/bin:/bin", "KEY": key, "PROJECT": project["id"]}
        walked = subprocess.run(
            ["bash", "-c", script],
            env=reader,
            capture_output=True,
            text=True,
            timeout=120,
        )
        agent_id = walked.stdout.rpartition("agent=")[2].strip()
        resolved = http.get(f"/api/agents/{agent_id}/config", headers=server.admin)
        experiments = http.get(
            f"/api/projects/{project['id']}/experiments", headers=server.admin
        ).json()

    assert len(blocks) >= 2, "the README lost its agent walkthrough"
    assert walked.returncode == 0, walked.stdout + walked.stderr
    assert resolved.json()["source"] == "variant"
    assert [e["status"] for e in experiments["data"]] == ["draft"]
