"""The OpenAPI document against the running server: every route, generated input, no 5xx, answers as described.

schemathesis reads `/api/v1/openapi.json` from the real listener and sends, for each
operation, inputs drawn from its schema with an admin token; each answer must not be a
server error and must match the status codes, media types, headers and bodies the
document declares. The number of examples per route is kept small: this is a check that
the document is exact, not a load test.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from smtpgate.delivery.capture import Envelope
from tests.admin.conftest import Api

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
# Not `ignored_auth`: its tries with a broken token are failed logins that the guard slows down, and
# test_api.py::test_every_api_route_but_the_public_ones_needs_a_token already sends every route without one.
EXAMPLES = 8  # per route: about 20 s for the 42 routes on an idle machine
MESSAGE = b"From: seed@example.com\r\nSubject: seed\r\n\r\nbody\r\n"


class Seeds:
    """Values that exist on the server, so generated requests also reach the success paths."""

    def __init__(self, api: Api) -> None:
        server = api.server
        self.login = "seed@example.com"
        self.app_password = server.account_with_app_password(self.login)
        credential = server.credentials.list_credentials(account=self.login)[0]
        queued = server.runtime.queue.enqueue(envelope("b@example.org", credential.id), MESSAGE)
        self.doomed = server.runtime.queue.enqueue(envelope("d@example.org", None), MESSAGE).id
        with server.runtime.capture.begin(envelope("c@example.org", None)) as writer:
            writer.write(MESSAGE)
            captured = writer.commit()
        self.path = {"login": self.login, "credential_id": credential.id, "message_id": queued.id,
                     "network": "198.51.100.7", "ref": "-", "jti": "-"}
        self.captured = captured.id
        self.made = itertools.count()

    def fill(self, case: schemathesis.Case) -> schemathesis.Case:
        n = next(self.made)
        for name in case.path_parameters or {}:
            if name in self.path:
                case.path_parameters[name] = self.path[name]
        if "/capture/" in case.operation.path and case.path_parameters:
            case.path_parameters["message_id"] = self.captured
        elif case.operation.method.lower() == "delete" and "/queue/" in case.operation.path:
            case.path_parameters["message_id"] = self.doomed  # the one the other routes do not need
        if isinstance(case.body, dict):
            valid = {"login": f"made{n}@example.com", "network": f"198.51.100.{n % 250 + 1}", "domain": "example.com",
                     "selector": f"s{n}", "allow_ip": ["192.0.2.0/24"], "allow_from": ["@example.com"],
                     "expires": "1d", "duration": "1h", "overlap": "1h", "token_lifetime": "1h",
                     "password": f"Correct-Horse-Battery-{n}", "credential": self.path["credential_id"],
                     "account": self.login, "name": f"name{n}"}
            case.body.update({k: v for k, v in valid.items() if k in case.body})
        if case.query:
            case.query.pop("cursor", None)
            if "account" in case.query:
                case.query["account"] = self.login
        return case


def envelope(rcpt: str, credential: str | None) -> Envelope:
    return Envelope("seed@example.com", (rcpt,), credential, "seed@example.com", "127.0.0.1", "client.test",
                    datetime.now(UTC))


def exercise(operation: schemathesis.APIOperation, seeds: Seeds, api: Api) -> list[int]:
    """Send the operation's generated cases (half of them on seeded values); the statuses seen."""
    headers = {"Authorization": f"Bearer {api.tokens['admin'].secret}"}
    generated = operation.as_strategy()
    statuses: list[int] = []

    @given(case=st.one_of(generated, generated.map(seeds.fill)))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def conforms(case: schemathesis.Case) -> None:
        statuses.append(case.call_and_validate(base_url=api.base, headers=headers, checks=CHECKS, timeout=120).status_code)

    conforms()
    return statuses


def test_every_route_answers_as_the_document_says(api: Api) -> None:
    seeds = Seeds(api)
    with api.client(None) as http:  # a loaded machine may take a while for the first build of the document
        schema = schemathesis.openapi.from_dict(http.get("/api/v1/openapi.json").raise_for_status().json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40, [o.label for o in operations]
    failures: dict[str, str] = {}
    succeeded = set()
    for operation in operations:
        try:
            if any(200 <= status < 300 for status in exercise(operation, seeds, api)):
                succeeded.add(operation.label)
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every route is tried, all failures shown
            inner = [repr(e)[:1500] for e in getattr(exc, "exceptions", ())]
            failures[operation.label] = "\n".join([str(exc)[:3000], *inner])
    errors = [line for line in api.server.log().splitlines() if "Error" in line or "Traceback" in line]
    assert not failures, "\n\n".join([*(f"{label}:\n{text}" for label, text in failures.items()), *errors[-20:]])
    assert len(succeeded) >= 30, f"only these routes were reached past validation: {sorted(succeeded)}"
