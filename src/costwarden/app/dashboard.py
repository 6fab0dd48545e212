"""The web dashboard at /dashboard: sign-in and sign-out, the page and its bundled assets (served
from the package, nothing from a CDN), and the JSON API it reads (app/dashboard_api.py).

Sign-in takes the admin token (an admin session) or a costwarden key (a read-only session scoped to
that key's team) from a form, and answers with an HttpOnly, SameSite=Strict cookie holding a signed
session; the token itself is never put in a cookie or a URL.
"""

from __future__ import annotations

import secrets
import time
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from costwarden.app.dashboard_api import dashboard_api
from costwarden.app.dashboard_compute import compute_api
from costwarden.app.dashboard_session import COOKIE, Role, Sessions, SessionSigner, session_secret
from costwarden.app.runtime import Runtime
from costwarden.protocols.errors import GatewayError

ASSETS = "/dashboard/assets"
SESSION_HOURS = 8.0
_FORM_LIMIT = 4096
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"


def web_dir() -> Path:
    return Path(str(resources.files("costwarden") / "web"))


def _page(name: str, status: int = 200, message: str = "") -> HTMLResponse:
    html = (web_dir() / name).read_text().replace("{{message}}", message)
    headers = {"content-security-policy": _CSP, "cache-control": "no-store", "x-frame-options": "DENY"}
    return HTMLResponse(html, status, headers=headers)


def add_dashboard(api: FastAPI, runtime: Runtime) -> None:
    token = runtime.config.server.admin_token
    signer = SessionSigner(session_secret(token), SESSION_HOURS * 3600)
    sessions = Sessions(signer, runtime.keyring.active)
    api.state.dashboard_sessions = sessions
    api.mount(ASSETS, StaticFiles(directory=web_dir()), name="dashboard-assets")
    api.include_router(dashboard_api(runtime))
    api.include_router(compute_api(runtime))

    @api.get("/dashboard", include_in_schema=False)
    async def page(request: Request) -> Response:
        if sessions.read(request.cookies.get(COOKIE), time.time()) is None:
            return _page("login.html")
        return _page("index.html")

    @api.post("/dashboard/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        body = await request.body()
        form = parse_qs(body[:_FORM_LIMIT].decode("utf-8", "replace")) if len(body) <= _FORM_LIMIT else {}
        presented = (form.get("token") or [""])[-1].strip()
        now = time.time()
        if token and presented and secrets.compare_digest(presented.encode(), token.encode()):
            value = signer.issue(Role.ADMIN, None, None, now)
        else:
            try:
                identity = runtime.keyring.resolve(presented) if presented else None
            except GatewayError:
                identity = None  # a revoked key
            if identity is None:
                return _page("login.html", 401, "That token is not the admin token nor a valid key.")
            value = signer.issue(Role.TEAM, identity.team, identity.key_id, now)
        reply = RedirectResponse("/dashboard", status_code=303)
        reply.set_cookie(
            COOKIE,
            value,
            max_age=int(signer.ttl_s),
            path="/dashboard",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return reply

    @api.post("/dashboard/logout", include_in_schema=False)
    async def logout() -> Response:
        reply = RedirectResponse("/dashboard", status_code=303)
        reply.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
        return reply
