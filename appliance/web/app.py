"""The ASGI application: API routes, pages, the console WebSocket, static
files. `make_app(paths)` is what the server (and the tests) run."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from appliance.errors import HostError
from appliance.host import Host, HostPaths
from appliance.paths import data_root
from appliance.web import api, console, pages
from appliance.web.auth import Auth, AuthSettings


class BoundedIntConvertor(IntegerConvertor):
    """`{id:int}` in our paths: at most 18 digits (Starlette's own takes any
    number of them, and int() raises on more than 4300: a 500). A longer
    number matches no route: 404."""

    regex = "[0-9]{1,18}"


register_url_convertor("int", BoundedIntConvertor())


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


class BodyTooLarge(HostError):
    """A request body past the limit (raised by the receive BodyLimit hands down)."""

    def __init__(self, limit: int) -> None:
        size = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"
        super().__init__(f"request body too large: at most {size}", 413)


class BodyLimit:
    """Every request body streams through here and is cut at `limit` bytes,
    whatever the route (JSON, form posts, the login form): a Content-Length
    over the limit is answered 413 before a byte of the body is read, and a
    body that goes past it (chunked, or longer than announced) makes the
    next receive raise BodyTooLarge, answered 413 if the route does not
    answer it itself. A 413 closes the connection (the rest of the body is
    never read)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isascii() or not length.isdigit()
                                   or len(length) > 18 or int(length) > self.limit):
            await self.too_large(scope, receive, send)
            return
        received = 0
        cut = started = False

        async def limited_receive() -> dict[str, object]:
            nonlocal received, cut
            if cut:
                raise BodyTooLarge(self.limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    cut = True
                    raise BodyTooLarge(self.limit)
            return message  # type: ignore[return-value]

        async def tracking_send(message: dict[str, object]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if cut:  # the rest of the body is still on its way: do not read it
                    message["headers"] = [*message.get("headers", []),  # type: ignore[misc]
                                          (b"connection", b"close")]
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)  # type: ignore[arg-type]
        except BodyTooLarge:
            if started:
                raise
            await self.too_large(scope, receive, send)

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = str(BodyTooLarge(self.limit))
        response: Response = (JSONResponse({"error": message}, status_code=413)
                              if scope["path"].startswith("/api/")
                              else Response(message, status_code=413, media_type="text/plain"))
        response.headers["connection"] = "close"
        await response(scope, receive, send)  # a Response never reads the body


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
    app.add_middleware(BodyLimit, limit=api.MAX_BODY)
    app.add_middleware(SecurityHeaders)
    app.state.host = host
    app.state.auth = auth
    app.state.openapi = api.openapi_document()
    return app
