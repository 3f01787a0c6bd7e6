"""The web UI and REST API (`appliance web serve`): Starlette on uvicorn,
HTTPS on port 8006. api.py is the JSON API (and its OpenAPI description),
auth.py login/tickets/CSRF/tokens, pages.py the HTML pages (templates and
static files in webui/), console.py the console WebSocket, app.py puts them
together, server.py runs it. Everything about guests goes through
appliance.host."""
