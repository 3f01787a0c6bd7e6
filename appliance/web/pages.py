"""The web UI's pages: server-rendered jinja2 templates from webui/templates,
readable without JavaScript (plain forms and links); htmx refreshes the
guest list and task logs, xterm.js shows the console.

Every form that changes something carries the CSRF token (csrf_token).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from appliance.errors import HostError
from appliance.host import host_summary
from appliance.host.guests import FIELDS, GuestType
from appliance.web.api import Ctx, client_of, set_ticket_cookie
from appliance.web.auth import COOKIE

PageHandler = Callable[[Request, Ctx], Awaitable[Response]]


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def make_pages(templates: Jinja2Templates,
               make_ctx: Callable[[Request], Ctx]) -> list[Route]:
    templates.env.filters["bytes"] = human_bytes
    templates.env.filters["urlquote"] = lambda s: quote(str(s), safe="")
    templates.env.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S",
                                                            time.localtime(float(t)))

    def render(request: Request, ctx: Ctx, name: str, status: int = 200,
               **context: Any) -> Response:
        ident = ctx.identity
        csrf = ctx.auth.csrf_token(ident.ticket) if ident and ident.ticket else ""
        return templates.TemplateResponse(request, name, {"user": ident.user if ident else None,
                                                          "csrf": csrf, **context},
                                          status_code=status)

    def page(handler: PageHandler, write: bool = False) -> Callable[[Request],
                                                                    Awaitable[Response]]:
        async def call(request: Request) -> Response:
            ctx = make_ctx(request)
            if ctx.identity is None or ctx.identity.via != "ticket":
                nxt = quote(request.url.path, safe="/")
                return RedirectResponse(f"/login?next={nxt}", status_code=303)
            if write:
                form = await request.form()
                if not ctx.auth.check_csrf(ctx.identity.ticket, str(form.get("csrf_token", ""))):
                    return HTMLResponse("missing or wrong CSRF token", status_code=403)
            try:
                return await handler(request, ctx)
            except HostError as e:
                return render(request, ctx, "error.html", status=e.http_status, message=str(e))

        return call

    async def login_get(request: Request) -> Response:
        ctx = make_ctx(request)
        # pages need a ticket: a token client gets the form (no redirect loop)
        if ctx.identity is not None and ctx.identity.via == "ticket":
            return RedirectResponse("/dashboard", status_code=303)
        return render(request, ctx, "login.html", next=request.query_params.get("next", ""))

    async def login_post(request: Request) -> Response:
        ctx = make_ctx(request)
        form = await request.form()
        user, password = str(form.get("username", "")), str(form.get("password", ""))
        nxt = str(form.get("next", ""))
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/dashboard"
        try:
            ticket = await ctx.auth.login(user, password, client_of(request))
        except HostError as e:
            return render(request, ctx, "login.html", status=e.http_status, error=str(e),
                          username=user, next=nxt)
        resp = RedirectResponse(nxt, status_code=303)
        set_ticket_cookie(resp, ctx, ticket)
        return resp

    async def logout(request: Request) -> Response:
        ctx = make_ctx(request)
        if ctx.identity is not None and ctx.identity.via == "ticket":
            form = await request.form()
            if not ctx.auth.check_csrf(ctx.identity.ticket, str(form.get("csrf_token", ""))):
                return HTMLResponse("missing or wrong CSRF token", status_code=403)
            await run_in_threadpool(ctx.auth.revoke, ctx.identity.ticket)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/", httponly=True, secure=ctx.secure_cookie,
                           samesite="strict")
        return resp

    async def root(request: Request) -> Response:
        return RedirectResponse("/dashboard", status_code=303)

    async def dashboard(request: Request, ctx: Ctx) -> Response:
        summary = await run_in_threadpool(host_summary, ctx.host.paths)
        rows = await run_in_threadpool(ctx.host.list_guests)
        running = sum(1 for g in rows if g.status == "running")
        return render(request, ctx, "dashboard.html", s=summary, guests=len(rows),
                      running=running, tasks=ctx.host.tasks.list(limit=5))

    async def guests(request: Request, ctx: Ctx) -> Response:
        rows = await run_in_threadpool(ctx.host.list_guests)
        name = "guest_rows.html" if request.headers.get("hx-request") else "guests.html"
        return render(request, ctx, name, rows=rows)

    def create_page(kind: GuestType) -> PageHandler:
        fields = [f for f in FIELDS if kind in f.types]

        async def show(request: Request, ctx: Ctx, values: dict[str, Any] | None = None,
                       error: str = "", status: int = 200) -> Response:
            tpls = [t for t in await run_in_threadpool(ctx.host.templates) if t.kind == kind]
            return render(request, ctx, "create.html", status=status, kind=kind, fields=fields,
                          templates=tpls, values=values or {"memory_mib": 512, "cpus": 1},
                          error=error)

        async def handler(request: Request, ctx: Ctx) -> Response:
            if request.method == "GET":
                return await show(request, ctx)
            form = await request.form()
            values = {f.name: str(form.get(f.name, "")).strip() for f in fields
                      if f.name in form}
            if "password" in values and not values["password"]:
                del values["password"]
            req = {k: v for k, v in values.items() if v != ""}
            assert ctx.identity is not None
            try:
                task = await run_in_threadpool(ctx.host.create, kind, req, ctx.identity.user)
            except HostError as e:
                values.pop("password", None)
                return await show(request, ctx, values, str(e), e.http_status)
            return RedirectResponse(f"/tasks/{quote(task.upid, safe='')}", status_code=303)

        return handler

    async def guest(request: Request, ctx: Ctx) -> Response:
        gid = request.path_params["id"]
        g = await run_in_threadpool(ctx.host.guest, gid)
        # ids are reused: only the tasks of this guest, not of an earlier one
        since = g.config.created - 1
        tasks = [t for t in ctx.host.tasks.list(limit=10, guest=gid) if t.started >= since]
        return render(request, ctx, "guest.html", g=g, tasks=tasks)

    async def action(request: Request, ctx: Ctx) -> Response:
        gid, name = request.path_params["id"], request.path_params["action"]
        if name not in ("start", "shutdown", "stop", "delete"):
            raise HostError(f"no action {name}", 404)
        assert ctx.identity is not None
        task = await run_in_threadpool(getattr(ctx.host, name), gid, ctx.identity.user)
        return RedirectResponse(f"/tasks/{quote(task.upid, safe='')}", status_code=303)

    async def tasks(request: Request, ctx: Ctx) -> Response:
        return render(request, ctx, "tasks.html", rows=ctx.host.tasks.list(limit=100))

    async def task(request: Request, ctx: Ctx) -> Response:
        upid = request.path_params["upid"]
        t = ctx.host.tasks.get(upid)
        name = "task_log.html" if request.headers.get("hx-request") else "task.html"
        return render(request, ctx, name, t=t, log=ctx.host.tasks.log(upid))

    return [
        Route("/", root),
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/dashboard", page(dashboard)),
        Route("/guests", page(guests)),
        Route("/guests/new-vm", page(create_page("vm")), methods=["GET"]),
        Route("/guests/new-vm", page(create_page("vm"), write=True), methods=["POST"]),
        Route("/guests/new-ct", page(create_page("ct")), methods=["GET"]),
        Route("/guests/new-ct", page(create_page("ct"), write=True), methods=["POST"]),
        Route("/guests/{id:int}", page(guest)),
        Route("/guests/{id:int}/{action}", page(action, write=True), methods=["POST"]),
        Route("/tasks", page(tasks)),
        Route("/tasks/{upid}", page(task)),
    ]
