"""The fuzz request strategy: every endpoint, each with its methods, paths, queries, headers, framing."""

from __future__ import annotations

import gzip
from urllib.parse import quote

from hypothesis import strategies as st

from tests.fuzz.cases import Case, Framing
from tests.fuzz.strategies import (
    GOOD_KEYS,
    chat_body,
    completion_body,
    embedding_body,
    infer_body,
    mutated_body,
)
from tests.integration.setup_config import KEYS

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE")
METHODS = (*HTTP_METHODS, "FOO")  # httptools knows methods by name: FOO is not HTTP to it
BODY_KINDS = {
    "/v1/chat/completions": ("chat", chat_body()),
    "/v1/completions": ("completion", completion_body()),
    "/v1/embeddings": ("embedding", embedding_body()),
}
V2_MODELS = ("iris",) * 12 + ("chat", "nope", "iris%00", "%2e%2e", "i" * 500, "%C3%A9")
PLAIN_PATHS = (
    "/v1/models",
    "/v1/costwarden/spend",
    "/healthz",
    "/readyz",
    "/metrics",
    "/v2/health/ready",
    "/v2/health/live",
    "/v2",
    "/",
    "/v1/",
    "/v1/foo",
    "/v1/models/chat",
    "/v1/%2e%2e/admin/v1/keys",
    "/v2/models/../../admin/v1/keys",
    "/admin/v1/keys",
    "/admin/v1/records",
    "/proxy/",
    "/proxy/nope/x",
    "/proxy/chat/v1/models",
    "/%00",
    "/" + "a" * 9000,
)
PATH_TAILS = ("",) * 30 + ("/", "%00", "/..", "/%2e%2e", "//", ";x", "%ff", "/" + "b" * 3000, "%20", "\u00e9")
QUERY_VALUES = ("", "30d", "1h", "team", "team=ads", "team=search", "%ff%fe", "a" * 3000, "%00", "-1", "1e308")
AUTH = (
    *GOOD_KEYS * 6,
    None,
    "cw_search_wrongsecretwrongsecret",
    "sk-not-ours",
    "",
    "x" * 12_000,
)


@st.composite
def path_and_body(draw: st.DrawFn) -> tuple[str, str, bytes, list[str]]:
    """(method, path, body, notes) for one endpoint, before odd tails and queries."""
    endpoint = draw(st.sampled_from(["openai", "openai", "openai", "v2", "v2", "proxy", "plain"]))
    if endpoint == "openai":
        path = draw(st.sampled_from(list(BODY_KINDS)))
        kind, strategy = BODY_KINDS[path]
        raw, notes = draw(mutated_body(kind, draw(strategy)))
        return "POST", path, raw, notes
    if endpoint == "v2":
        model = draw(st.sampled_from(V2_MODELS))
        version = draw(st.sampled_from([""] * 12 + ["/versions/v1", "/versions/", "/versions/%00"]))
        action = draw(st.sampled_from(["/infer", "/infer", "/infer", "", "/ready", "/explain"]))
        path = f"/v2/models/{model}{version}{action}"
        if action == "/infer":
            raw, notes = draw(mutated_body("infer", draw(infer_body())))
            return "POST", path, raw, notes
        return "GET", path, b"", []
    if endpoint == "proxy":
        tail = draw(st.sampled_from(["health", "v1/models", "v1/chat/completions", "v1/nope", "", "v2/x"]))
        raw, notes = draw(mutated_body("chat", draw(chat_body())))
        method = "POST" if tail == "v1/chat/completions" else "GET"
        return method, f"/proxy/textproxy/{tail}", raw if method == "POST" else b"", notes
    return "GET", draw(st.sampled_from(PLAIN_PATHS)), b"", []


@st.composite
def query(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 3)):
        return ""
    names = st.sampled_from(["since", "group_by", "where", "from", "to", "limit", "", "%ff", "a" * 300])
    pairs = draw(st.lists(st.tuples(names, st.sampled_from(QUERY_VALUES) | st.text(max_size=20)), max_size=4))
    text = "&".join(f"{k}={quote(v, safe='%=')}" for k, v in pairs)  # raw %ff stays: not UTF-8 once decoded
    return "?" + (text or draw(st.sampled_from(["", "&&&", "=", "a", "%"])))


@st.composite
def headers(draw: st.DrawFn, body: bytes) -> tuple[list[tuple[bytes, bytes]], bytes, list[str], bool, bool]:
    """(headers, body, notes, malformed, over_cap): auth, content type and encoding, extras."""
    out: list[tuple[bytes, bytes]] = [(b"host", b"127.0.0.1")]
    notes: list[str] = []
    malformed = over_cap = False
    key = draw(st.sampled_from(AUTH))
    if key is not None:
        scheme = draw(st.sampled_from(["Bearer "] * 20 + ["bearer ", "Basic ", "", "Bearer  "]))
        out.append((b"authorization", (scheme + key).encode()))
    content_type = draw(
        st.sampled_from(
            [b"application/json"] * 5 + [b"", b"text/plain", b"application/json; charset=utf-16", b"\xff\xfe"]
        )
    )
    if content_type:
        out.append((b"content-type", content_type))
    encoding = draw(st.sampled_from(["none"] * 30 + ["gzip-real", "gzip-claim", "br"]))
    if encoding == "gzip-real":
        body = gzip.compress(body)
    if encoding != "none":
        out.append((b"content-encoding", b"br" if encoding == "br" else b"gzip"))
        notes.append(f"encoding:{encoding}")
    extra = draw(
        st.sampled_from(
            ["none"] * 40
            + ["tags", "bad-tags", "many", "too-many", "long-value", "huge", "over-cap", "ctl", "dup-auth", "forwarded"]
        )
    )
    if extra != "none":
        notes.append(f"headers:{extra}")
    if extra == "tags":
        out.append((b"x-costwarden-tags", b"tier=gold,exp=fuzz"))
    elif extra == "bad-tags":
        out.append((b"x-costwarden-tags", draw(st.sampled_from([b"no-equals", b"a=" + b"b" * 5000, b"\xc3\xa9=\xff"]))))
    elif extra in ("many", "too-many"):
        out.extend((b"x-fuzz-%d" % i, b"v") for i in range(60 if extra == "many" else 150))
    elif extra == "long-value":
        out.append((b"x-fuzz", b"v" * 17_000))  # over max_header_value_bytes (16 KiB)
    elif extra == "huge":
        out.extend((b"x-fuzz-%d" % i, b"v" * 10_000) for i in range(8))  # over max_header_bytes (64 KiB)
    elif extra == "over-cap":
        out.extend((b"x-fuzz-%d" % i, b"v" * 15_000) for i in range(20))  # over the guard's 256 KiB buffer
        over_cap = True
    elif extra == "ctl":
        out.append((b"x-fuzz", draw(st.sampled_from([b"a\x00b", b"a\rb", b"\x7f"]))))
        malformed = True
    elif extra == "dup-auth":
        out.append((b"authorization", b"Bearer " + KEYS["ads"].encode()))
    elif extra == "forwarded":
        out.append((b"x-forwarded-for", b"1.2.3.4, \xff, " + b"9" * 3000))
        out.append((b"forwarded", b"for=unknown;proto=gopher"))
    return out, body, notes, malformed, over_cap


@st.composite
def cases(draw: st.DrawFn) -> Case:
    method, path, body, notes = draw(path_and_body())
    if draw(st.integers(0, 15)) == 0:
        method = draw(st.sampled_from(METHODS))
        notes.append("method")
    tail = draw(st.sampled_from(PATH_TAILS))
    target = quote(path + tail, safe="/%;=") + draw(query())
    head, body, head_notes, malformed, over_cap = draw(headers(body))
    framing = draw(st.sampled_from([Framing.LENGTH] * 30 + [Framing.CHUNKED] * 4 + [Framing.SHORT, Framing.BAD]))
    if framing is Framing.LENGTH and draw(st.integers(0, 60)) == 0:
        framing = Framing.LONG  # waits out the body timeout: rare, it costs a second
    if not body and framing is not Framing.BAD and draw(st.booleans()):
        framing = Framing.NONE
    return Case(
        method=method,
        target=target,
        headers=tuple(head),
        body=body,
        framing=framing,
        malformed=malformed or framing is Framing.BAD or method not in HTTP_METHODS,
        over_cap=over_cap,
        keep_alive=draw(st.booleans()),
        notes=(*notes, *head_notes),
    )
