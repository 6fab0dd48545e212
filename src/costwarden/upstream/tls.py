"""The client TLS context of a deployment's https:// upstreams (`tls:` in its config), for both
engines: aiohttp takes it as `ssl=`, the fast engine's pool wraps its connections in it."""

from __future__ import annotations

import ssl

from costwarden.config.models import UpstreamTls


def client_context(tls: UpstreamTls) -> ssl.SSLContext | bool:
    """`True` (the system's CAs, verified) when the config sets nothing, else a context of its own."""
    if tls.verify and tls.ca_file is None:
        return True
    context = ssl.create_default_context(cafile=tls.ca_file)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
