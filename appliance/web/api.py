"""The REST API: JSON under /api/. One table, ENDPOINTS, gives each
endpoint's method, path, handler, auth and schemas; it makes both the
Starlette routes and the OpenAPI description (/api/openapi.json).

Answers are {"data": ...}; errors {"error": "message"} with a 4xx status:
400 bad input, 401 no or bad credentials, 403 missing CSRF token, 404 no
such thing, 409 wrong state, 429 too many failed logins.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from appliance import __version__
from appliance.errors import HostError
from appliance.host import Host, host_summary
from appliance.host.guests import FIELDS, Field, GuestType
from appliance.web.auth import COOKIE, CSRF_HEADER, Auth, Identity

log = logging.getLogger("appliance.web")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
MAX_BODY = 1 << 20


@dataclass
class Ctx:
    """What a handler gets: the host, auth, the caller."""

    host: Host
    auth: Auth
    identity: Identity | None
    secure_cookie: bool = True


Handler = Callable[[Request, Ctx], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # Starlette path, e.g. /api/guests/{id:int}
    handler: Handler
    summary: str
    public: bool = False
    body: dict[str, Any] | None = None  # JSON schema of the request body
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    status: int = 200
    errors: tuple[int, ...] = ()
    query: tuple[tuple[str, dict[str, Any]], ...] = ()


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def identify(request: Request, auth: Auth) -> Identity | None:
    header = request.headers.get("authorization")
    if header:
        user = auth.check_token(header)
        return Identity(user, "token") if user else None
    ticket = request.cookies.get(COOKIE)
    if ticket:
        user = auth.check_ticket(ticket)
        if user:
            return Identity(user, "ticket", ticket)
    return None


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise HostError("request body too large", 413)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HostError("request body: not valid JSON", 400) from None
    if not isinstance(data, dict):
        raise HostError("request body: expected a JSON object", 400)
    return data


def path_id(request: Request) -> int:
    value = request.path_params["id"]
    if not isinstance(value, int) or value > 999_999_999:
        raise HostError(f"no guest {value}", 404)
    return value


def int_query(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or not lo <= int(raw) <= hi:
        raise HostError(f"{name}: expected a whole number from {lo} to {hi}", 400)
    return int(raw)


# --- handlers -----------------------------------------------------------------------


async def login(request: Request, ctx: Ctx) -> Response:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        data: dict[str, Any] = {k: form.get(k) for k in ("username", "password")}
    else:
        data = await json_body(request)
    user, password = data.get("username"), data.get("password")
    if not isinstance(user, str) or not isinstance(password, str) or not user:
        raise HostError("username and password: required strings", 400)
    ticket = await ctx.auth.login(user, password, client_of(request))
    name = ctx.auth.check_ticket(ticket)
    resp = JSONResponse({"data": {"username": name, "ticket": ticket,
                                  "CSRFPreventionToken": ctx.auth.csrf_token(ticket)}})
    set_ticket_cookie(resp, ctx, ticket)
    return resp


def set_ticket_cookie(resp: Response, ctx: Ctx, ticket: str) -> None:
    resp.set_cookie(COOKIE, ticket, max_age=ctx.auth.settings.ticket_lifetime, path="/",
                    httponly=True, secure=ctx.secure_cookie, samesite="strict")


async def logout(request: Request, ctx: Ctx) -> Response:
    if ctx.identity is not None and ctx.identity.via == "ticket":
        await run_in_threadpool(ctx.auth.revoke, ctx.identity.ticket)
    resp = JSONResponse({"data": None})
    resp.delete_cookie(COOKIE, path="/", httponly=True, secure=ctx.secure_cookie,
                       samesite="strict")
    return resp


async def version(request: Request, ctx: Ctx) -> Any:
    assert ctx.identity is not None
    return {"version": __version__, "user": ctx.identity.user}


async def host(request: Request, ctx: Ctx) -> Any:
    return await run_in_threadpool(host_summary, ctx.host.paths)


async def guests_list(request: Request, ctx: Ctx) -> Any:
    kind = request.query_params.get("type") or None
    if kind is not None and kind not in ("vm", "ct"):
        raise HostError("type: vm or ct", 400)
    rows = await run_in_threadpool(ctx.host.list_guests,
                                   "vm" if kind == "vm" else "ct" if kind == "ct" else None)
    return [g.to_json() for g in rows]


async def guest_get(request: Request, ctx: Ctx) -> Any:
    return (await run_in_threadpool(ctx.host.guest, path_id(request))).to_json()


def _task_answer(task: Any) -> dict[str, Any]:
    return {"task": task.upid, "guest": task.guest, "status": task.status}


def _creator(kind: GuestType) -> Handler:
    async def create(request: Request, ctx: Ctx) -> Any:
        assert ctx.identity is not None
        body = await json_body(request)
        task = await run_in_threadpool(ctx.host.create, kind, body, ctx.identity.user)
        return _task_answer(task)

    return create


def _action(name: str) -> Handler:
    async def act(request: Request, ctx: Ctx) -> Any:
        assert ctx.identity is not None
        task = await run_in_threadpool(getattr(ctx.host, name), path_id(request),
                                       ctx.identity.user)
        return _task_answer(task)

    return act


async def tasks_list(request: Request, ctx: Ctx) -> Any:
    limit = int_query(request, "limit", 50, 1, 1000) or 50
    guest = int_query(request, "guest", None, 0, 999_999_999)
    rows = await run_in_threadpool(ctx.host.tasks.list, limit, guest)
    return [t.to_json() for t in rows]


async def task_get(request: Request, ctx: Ctx) -> Any:
    upid = request.path_params["upid"]
    task = await run_in_threadpool(ctx.host.tasks.get, upid)
    return {**task.to_json(), "log": ctx.host.tasks.log(upid)}


async def templates_list(request: Request, ctx: Ctx) -> Any:
    return [t.to_json() for t in await run_in_threadpool(ctx.host.templates)]


async def storage(request: Request, ctx: Ctx) -> Any:
    return await run_in_threadpool(ctx.host.storage)


def _ticket_only(ctx: Ctx) -> Identity:
    if ctx.identity is None or ctx.identity.via != "ticket":
        raise HostError("API tokens are managed with a login session, not with a token", 403)
    return ctx.identity


async def tokens_list(request: Request, ctx: Ctx) -> Any:
    assert ctx.identity is not None
    return ctx.auth.list_tokens(ctx.identity.user)


async def token_create(request: Request, ctx: Ctx) -> Any:
    ident = _ticket_only(ctx)
    body = await json_body(request)
    tokenid, secret = ctx.auth.create_token(ident.user, body.get("name"),  # type: ignore[arg-type]
                                            body.get("comment", ""), body.get("expire", 0))
    return {"tokenid": tokenid, "secret": secret, "expire": body.get("expire", 0),
            "header": f"Authorization: ApplianceToken {tokenid}={secret}"}


async def token_delete(request: Request, ctx: Ctx) -> Any:
    ident = _ticket_only(ctx)
    ctx.auth.delete_token(ident.user, request.path_params["name"])
    return None


async def openapi(request: Request, ctx: Ctx) -> Response:
    return JSONResponse(openapi_document())


# --- the table --------------------------------------------------------------------


def _field_schema(f: Field) -> dict[str, Any]:
    s: dict[str, Any] = {"description": f.help}
    if f.kind == "int":
        s["type"] = "integer"
        if f.minimum is not None:
            s["minimum"] = f.minimum
    elif f.kind == "str":
        s.update(type="string", maxLength=f.max_length)
        if f.pattern is not None:
            s["pattern"] = f.pattern.pattern
    else:
        item = {"type": "integer", "minimum": 1} if f.name == "disks" else {"type": "string"}
        s.update(type="array", items=item)
    return s


def create_schema(kind: GuestType) -> dict[str, Any]:
    fields = [f for f in FIELDS if kind in f.types]
    return {"type": "object", "additionalProperties": False,
            "required": [f.name for f in fields if f.required],
            "properties": {f.name: _field_schema(f) for f in fields}}


GUEST = {"type": "object", "properties": {
    "id": {"type": "integer"}, "type": {"type": "string", "enum": ["vm", "ct"]},
    "name": {"type": "string"}, "status": {"type": "string", "enum": ["running", "stopped"]},
    "memory_mib": {"type": "integer"}, "cpus": {"type": "integer"},
    "template": {"type": "string"}}}
TASK_REF = {"type": "object", "properties": {"task": {"type": "string"},
                                             "guest": {"type": ["integer", "null"]}}}
LIST = {"type": "array", "items": {"type": "object"}}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST", "/api/login", login, "log in with a system account (PAM); sets the "
             "ticket cookie and returns the CSRF token", public=True,
             body={"type": "object", "required": ["username", "password"],
                   "properties": {"username": {"type": "string"},
                                  "password": {"type": "string"}}},
             errors=(400, 401, 429)),
    Endpoint("POST", "/api/logout", logout, "end the ticket and drop its cookie"),
    Endpoint("GET", "/api/version", version, "version and the calling user"),
    Endpoint("GET", "/api/host", host, "host summary: CPU, memory, disk, hardware "
             "detection report and verdict"),
    Endpoint("GET", "/api/guests", guests_list, "VMs and containers with their status",
             response={"type": "array", "items": GUEST}, errors=(400,),
             query=(("type", {"type": "string", "enum": ["vm", "ct"]}),)),
    Endpoint("GET", "/api/guests/{id:int}", guest_get, "one guest", response=GUEST,
             errors=(404,)),
    Endpoint("POST", "/api/vms", _creator("vm"), "create a VM from a template (a task)",
             body=create_schema("vm"), response=TASK_REF, errors=(400, 409)),
    Endpoint("POST", "/api/cts", _creator("ct"), "create a container from a template (a task)",
             body=create_schema("ct"), response=TASK_REF, errors=(400, 409)),
    Endpoint("POST", "/api/guests/{id:int}/start", _action("start"), "start a guest (a task)",
             response=TASK_REF, errors=(404, 409)),
    Endpoint("POST", "/api/guests/{id:int}/shutdown", _action("shutdown"),
             "stop a guest cleanly (a task)", response=TASK_REF, errors=(404, 409)),
    Endpoint("POST", "/api/guests/{id:int}/stop", _action("stop"),
             "stop a guest at once (a task)", response=TASK_REF, errors=(404, 409)),
    Endpoint("DELETE", "/api/guests/{id:int}", _action("delete"),
             "delete a stopped guest (a task)", response=TASK_REF, errors=(404, 409)),
    Endpoint("GET", "/api/tasks", tasks_list, "tasks, newest first", response=LIST,
             errors=(400,), query=(("limit", {"type": "integer", "minimum": 1,
                                              "maximum": 1000}),
                                   ("guest", {"type": "integer", "minimum": 0}))),
    Endpoint("GET", "/api/tasks/{upid}", task_get, "a task's status and log", errors=(404,)),
    Endpoint("GET", "/api/templates", templates_list, "VM and container templates",
             response=LIST),
    Endpoint("GET", "/api/storage", storage, "storage usage"),
    Endpoint("GET", "/api/access/tokens", tokens_list, "the caller's API tokens",
             response=LIST),
    Endpoint("POST", "/api/access/tokens", token_create, "make an API token; the secret is "
             "shown only in this answer", errors=(400, 403, 409),
             body={"type": "object", "required": ["name"],
                   "properties": {"name": {"type": "string"}, "comment": {"type": "string"},
                                  "expire": {"type": "integer", "minimum": 0,
                                             "description": "when it stops working, in "
                                             "seconds since the epoch; 0: never"}}}),
    Endpoint("DELETE", "/api/access/tokens/{name}", token_delete, "delete an API token",
             errors=(403, 404)),
    Endpoint("GET", "/api/openapi.json", openapi, "this description"),
)


def _openapi_path(path: str) -> str:
    return path.replace("{id:int}", "{id}")


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for ep in ENDPOINTS:
        op: dict[str, Any] = {"summary": ep.summary, "operationId": f"{ep.method.lower()}"
                              f"{_openapi_path(ep.path).replace('/', '_').replace('{', '')}"
                              .replace("}", "").replace(".", "_")}
        params = []
        for name in ("id", "upid", "name"):
            if f"{{{name}" in ep.path:
                schema = {"type": "integer", "minimum": 0} if name == "id" else {"type": "string"}
                params.append({"name": name, "in": "path", "required": True, "schema": schema})
        for name, schema in ep.query:
            params.append({"name": name, "in": "query", "required": False, "schema": schema})
        if params:
            op["parameters"] = params
        if ep.body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": ep.body}}}
        err = {"description": "error", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"error": {"type": "string"}}}}}}
        responses: dict[str, Any] = {str(ep.status): {"description": "OK", "content": {
            "application/json": {"schema": {"type": "object",
                                            "properties": {"data": ep.response}}}}}}
        for code in sorted({*ep.errors, *(() if ep.public else (401,)),
                            *((403,) if ep.method in WRITE_METHODS and not ep.public else ())}):
            responses[str(code)] = err
        op["responses"] = responses
        if not ep.public:
            op["security"] = [{"ticket": []}, {"token": []}]
        paths.setdefault(_openapi_path(ep.path), {})[ep.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "appliance host API", "version": __version__},
        "servers": [{"url": "/"}],
        "components": {"securitySchemes": {
            "ticket": {"type": "apiKey", "in": "cookie", "name": COOKIE,
                       "description": f"from POST /api/login; writes also need the "
                       f"{CSRF_HEADER} header"},
            "token": {"type": "apiKey", "in": "header", "name": "Authorization",
                      "description": "ApplianceToken USER@pam!NAME=SECRET"}}},
        "paths": paths,
    }


def make_routes(make_ctx: Callable[[Request], Ctx]) -> list[Route]:
    """One Starlette route per path; auth, CSRF and errors handled here once."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for ep in ENDPOINTS:
        by_path.setdefault(ep.path, {})[ep.method] = ep

    def endpoint_for(methods: dict[str, Endpoint]) -> Callable[[Request], Awaitable[Response]]:
        async def call(request: Request) -> Response:
            ep = methods.get(request.method) or (
                methods.get("GET") if request.method == "HEAD" else None)
            if ep is None:
                return error(405, f"{request.method} is not allowed here")
            ctx = make_ctx(request)
            try:
                if not ep.public:
                    if ctx.identity is None:
                        return error(401, "authentication required: log in or send an "
                                     "API token")
                    if (ep.method in WRITE_METHODS and ctx.identity.via == "ticket"
                            and not ctx.auth.check_csrf(ctx.identity.ticket,
                                                        request.headers.get(CSRF_HEADER))):
                        return error(403, f"missing or wrong {CSRF_HEADER} header")
                result = await ep.handler(request, ctx)
            except HostError as e:
                return error(e.http_status, str(e))
            except Exception as e:  # a bug: log it, answer JSON all the same
                log.exception("%s %s", request.method, request.url.path)
                return error(500, f"internal error: {type(e).__name__}: {e}")
            if isinstance(result, Response):
                return result
            return JSONResponse({"data": result}, status_code=ep.status)

        return call

    return [Route(path, endpoint_for(methods), methods=[*methods, "HEAD"]
                  if "GET" in methods else list(methods))
            for path, methods in by_path.items()]
