"""A raw HTTP/1.1 client for the fuzz tests: it sends exactly the bytes it is given (malformed framing,
odd request-targets, bytes no well-behaved client library would send) and parses one reply.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...]  # lower-case names, in the order sent
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a header (`name` in lower case), or None."""
        return next((value for key, value in self.headers if key == name), None)

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


class NoReply(Exception):
    """The server closed the connection or timed out without a complete HTTP reply."""


def send(port: int, raw: bytes, method: str, timeout: float = 20.0) -> Reply:
    """Send `raw` on a fresh connection to 127.0.0.1:`port` and read the first reply whole."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)  # the server may answer early and close (a 413): read what it said
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
            body = response.read()
        except (http.client.HTTPException, OSError) as exc:
            raise NoReply(f"{type(exc).__name__}: {exc}") from exc
        finally:
            response.close()
        headers = tuple((k.lower(), v) for k, v in response.getheaders())
        return Reply(response.status, headers, body)
