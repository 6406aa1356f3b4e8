"""Refresh the web UI's vendored JavaScript from the npm registry (``make vendor``).

Each package is pinned to a major version; the newest release within it is taken, its tarball
checked against the registry's integrity hash, and the files the pages load are written to
``web/static/vendor/`` with its licence and a VERSIONS line (version, sha256, licence). Only
maintainers run this: installing or serving PromptLooper never needs Node or the network.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from packaging.version import Version

REGISTRY = "https://registry.npmjs.org"
VENDOR = Path(__file__).parents[1] / "src" / "promptlooper" / "web" / "static" / "vendor"


@dataclass(frozen=True)
class Package:
    name: str
    major: int
    files: dict[str, str]  # path in the tarball -> name under vendor/
    licence_file: str = "package/LICENSE"


PACKAGES = (
    Package("htmx.org", 2, {"package/dist/htmx.min.js": "htmx.min.js"}),
    Package(
        "uplot",
        1,
        {
            "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
            "package/dist/uPlot.min.css": "uPlot.min.css",
        },
    ),
)


def _newest(client: httpx.Client, package: Package) -> dict:
    document = client.get(f"{REGISTRY}/{package.name}").raise_for_status().json()
    versions = [
        Version(v)
        for v in document["versions"]
        if not Version(v).is_prerelease and Version(v).major == package.major
    ]
    return document["versions"][str(max(versions))]


def _verified_tarball(client: httpx.Client, release: dict) -> bytes:
    data = client.get(release["dist"]["tarball"]).raise_for_status().content
    algorithm, _, expected = release["dist"]["integrity"].partition("-")
    if base64.b64encode(hashlib.new(algorithm, data).digest()).decode() != expected:
        raise SystemExit(f"{release['name']}: tarball does not match the registry's integrity")
    return data


def refresh() -> None:
    VENDOR.mkdir(parents=True, exist_ok=True)
    lines = ["# name version file sha256 licence (written by scripts/vendor_js.py)"]
    with httpx.Client(timeout=60, follow_redirects=True) as client:
        for package in PACKAGES:
            release = _newest(client, package)
            tarball = io.BytesIO(_verified_tarball(client, release))
            wanted = {**package.files, package.licence_file: f"{package.name}.LICENSE"}
            with tarfile.open(fileobj=tarball) as archive:
                for member, target in wanted.items():
                    extracted = archive.extractfile(member)
                    if extracted is None:
                        raise SystemExit(f"{package.name}: {member} is not a file")
                    content = extracted.read()
                    (VENDOR / target).write_bytes(content)
                    digest = hashlib.sha256(content).hexdigest()
                    version, licence = release["version"], release["license"]
                    lines.append(f"{package.name} {version} {target} {digest} {licence}")
            print(f"{package.name} {release['version']}")
    (VENDOR / "VERSIONS").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    refresh()
