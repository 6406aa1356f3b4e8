"""Which certificates a provider's TLS connections trust."""

from __future__ import annotations

import re
import ssl


def trusted_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Certificates and host names verified against the system's certificates (OpenSSL reads
    ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` from the environment), or, for a provider with its
    own ``ca_bundle`` (PEM text: a private certificate authority, a self-signed server),
    against those certificates only. A bundle that holds no certificate is a ``ValueError``:
    an empty one would otherwise mean the system's certificates."""
    if ca_bundle is None:
        return ssl.create_default_context()
    if not ca_bundle.strip():
        raise ValueError("not a PEM certificate bundle: it is empty")
    try:
        return ssl.create_default_context(cadata=ca_bundle)
    except TypeError as exc:  # cadata text must be ASCII, as PEM is
        raise ValueError("not a PEM certificate bundle: PEM is ASCII text") from exc
    except ssl.SSLError as exc:
        reason = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", exc.strerror or str(exc))
        raise ValueError(f"not a PEM certificate bundle: {reason}") from exc
