"""A Batch API file upload: the `multipart/form-data` body of `POST /v1/files` (sans I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.parser import BytesParser

from costwarden.protocols.errors import GatewayError


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    purpose: str
    content: bytes


def parse_upload(content_type: str, body: bytes) -> Upload:
    """The `file` and `purpose` fields; GatewayError 400 when the body is not such a form."""
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        raise GatewayError(400, "invalid_upload", "upload the file as multipart/form-data with `file` and `purpose`")
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise GatewayError(400, "invalid_upload", "the multipart body could not be read")
    purpose: str | None = None
    upload: tuple[str, bytes] | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name == "purpose":
            purpose = data.decode("utf-8", "replace").strip()
        elif name == "file":
            upload = (str(part.get_filename() or "batch.jsonl"), data)
    if upload is None:
        raise GatewayError(400, "missing_file", "the form has no `file` field")
    if purpose is None:
        raise GatewayError(400, "missing_purpose", "the form has no `purpose` field")
    return Upload(upload[0], purpose, upload[1])
