"""Addresses no provider call may reach."""

from __future__ import annotations

import pytest

from promptlooper.sweeps.adapters.outbound import refused_address, refused_host


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "169.254.1.1",
        "169.254.170.2",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "100.100.100.200",
        "192.0.0.192",
    ],
)
def test_link_local_and_metadata_addresses_are_refused(address: str):
    assert refused_address(address) is not None


@pytest.mark.parametrize(
    "host", ["metadata.google.internal", "METADATA.GOOGLE.INTERNAL.", "[fe80::1]", "metadata"]
)
def test_metadata_host_names_are_refused(host: str):
    assert refused_host(host) is not None


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "10.0.0.5", "api.openai.com", "[::1]", "100.100.100.201", "8.8.8.8"]
)
def test_other_hosts_pass(host: str):
    assert refused_host(host) is None
