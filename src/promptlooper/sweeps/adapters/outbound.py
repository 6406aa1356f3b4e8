"""Addresses a provider call must never reach, whoever asks and whatever the server's policy.

A cloud instance answers its metadata service (credentials of the machine's role, among
others) to anyone on the machine who asks a link-local address; a sweep's ``base_url`` is
user input that the server calls. So link-local ranges and the metadata services' addresses
and host names are refused by name when a sweep is checked and again by address when a
connection is made, which also catches a host name that resolves there (DNS rebinding).
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
    )
)
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)


def refused_address(address: str | IPAddress) -> str | None:
    """Why a connection to ``address`` is refused, or None when it may be made."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    return None


def refused_host(host: str) -> str | None:
    """Why a URL naming ``host`` (a name or a literal address) is refused, or None."""
    name = host.strip("[]").rstrip(".").lower()
    if name in METADATA_HOSTS:
        return f"{name} is a cloud metadata host"
    return refused_address(name)
