"""Host names resolved for provider calls, with the refused addresses taken out of play.

A sweep's ``base_url`` is checked by name when the sweep is created, but a name can resolve to
anything when the call is made (DNS rebinding: a public answer at creation, a link-local one a
minute later). The connection pool asks this resolver for every name it connects to, so the
addresses of ``outbound.refused_address`` are refused right where they would be used.
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from promptlooper.sweeps.adapters.outbound import refused_address


class RefusedAddress(OSError):
    """A host name resolved to an address no provider call may reach. An ``OSError``, as a
    failed lookup is, so that aiohttp reports it as the connection error it is."""


class GuardedResolver(AbstractResolver):
    """aiohttp's default resolver, refusing a name if any of its addresses is refused: an
    attacker's name that answers both a public and a metadata address gets neither."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            reason = refused_address(result["host"])
            if reason is not None:
                raise RefusedAddress(f"{host} resolves to {reason}")
        return results

    async def close(self) -> None:
        await self._resolver.close()
