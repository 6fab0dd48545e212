"""A throwaway CA and a server certificate it signs, made by the `openssl` CLI, for TLS upstreams on
loopback (the certificate names `localhost` only, so `127.0.0.1` fails the hostname check)."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
_EXTENSIONS = "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"


@dataclass(frozen=True)
class Certs:
    ca_file: Path  # the CA that signed the server's certificate
    other_ca_file: Path  # a CA that did not
    cert_file: Path
    key_file: Path

    def server_context(self, names: list[str | None]) -> ssl.SSLContext:
        """A server context that appends each client's SNI name (None: none sent) to `names`."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        context.sni_callback = lambda _sock, name, _ctx: names.append(name)
        return context


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl("req", "-x509", *_EC, "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    return cert, key


def make_certs(folder: Path) -> Certs:
    ca, ca_key = _ca(folder, "test-ca")
    other, _ = _ca(folder, "other-ca")
    key, request, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    _openssl("req", *_EC, "-keyout", key, "-out", request, "-subj", "/CN=localhost")
    extensions = folder / "server.ext"
    extensions.write_text(_EXTENSIONS)
    _openssl("x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", extensions)  # fmt: skip
    return Certs(ca, other, cert, key)
