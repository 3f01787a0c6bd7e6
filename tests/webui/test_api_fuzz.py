"""Schemathesis against the OpenAPI description: generated requests for
every operation (fixed budget: 25 examples each, derandomized), with an API
token; no answer may be a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as budget

from appliance.host import HostPaths
from appliance.web.api import ENDPOINTS
from appliance.web.app import make_app
from appliance.web.auth import AuthSettings

EXAMPLES = 25


def test_no_generated_request_gets_a_server_error(web_paths: HostPaths,
                                                  settings: AuthSettings) -> None:
    app = make_app(web_paths, settings)
    tokenid, secret = app.state.auth.create_token("root@pam", "fuzz")
    token = {"Authorization": f"ApplianceToken {tokenid}={secret}"}
    served = app.state.openapi  # what GET /api/openapi.json answers
    schema = schemathesis.openapi.from_dict(served)
    schema.app = app  # requests go to the ASGI app in this process
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(ENDPOINTS)
    seen: dict[str, set[int]] = {}
    for op in operations:

        @given(case=op.as_strategy())
        @budget(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=dict(token))
            seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)
            assert response.status_code < 500, (case.as_curl_command(), response.text[:500])

        check()
    assert len(seen) == len(ENDPOINTS)
    # the token was accepted: requests reached the handlers and their checks
    assert 200 in seen["GET /api/guests"] and 400 in seen["POST /api/vms"]
    assert 401 not in seen["POST /api/vms"]
