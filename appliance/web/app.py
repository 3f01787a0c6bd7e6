"""The ASGI application: API routes, pages, the console WebSocket, static
files. `make_app(paths)` is what the server (and the tests) run."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from appliance.host import Host, HostPaths
from appliance.paths import data_root
from appliance.web import api, console, pages
from appliance.web.auth import Auth, AuthSettings


def webui_dir() -> Path:
    return data_root() / "webui"


class SecurityHeaders:
    """Headers on every answer: no framing, no sniffing, same-origin resources."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                headers += [
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"content-security-policy",
                     b"default-src 'self'; style-src 'self' 'unsafe-inline'; "
                     b"connect-src 'self'; frame-ancestors 'none'"),
                    (b"cache-control", b"no-store"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)  # type: ignore[arg-type]


def make_app(paths: HostPaths | None = None, settings: AuthSettings | None = None,
             secure_cookie: bool = True) -> Starlette:
    paths = paths or HostPaths.from_env()
    host = Host(paths, background=True)
    auth = Auth(paths, settings or AuthSettings.from_env())

    def make_ctx(request: Request) -> api.Ctx:
        return api.Ctx(host, auth, api.identify(request, auth), secure_cookie)

    async def console_ws(ws: WebSocket) -> None:
        await console.console_ws(ws, host, auth)

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "no such API path"}, status_code=404)
        return Response("not found", status_code=404, media_type="text/plain")

    templates = Jinja2Templates(directory=str(webui_dir() / "templates"))
    routes: list[BaseRoute] = [
        *api.make_routes(make_ctx),
        WebSocketRoute("/api/guests/{id:int}/console", console_ws),
        *pages.make_pages(templates, make_ctx),
        Mount("/static", StaticFiles(directory=str(webui_dir() / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.add_middleware(SecurityHeaders)
    app.state.host = host
    app.state.auth = auth
    app.state.openapi = api.openapi_document()
    return app
