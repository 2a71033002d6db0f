"""schemathesis over the whole OpenAPI document: in-process on both databases, and over HTTP
against a real gunicorn.

What must hold for every generated request, valid or not:
- `not_a_server_error`: never a 5xx;
- `status_code_conformance`: only the statuses the operation documents (200 and its 4xx);
- `content_type_conformance` and `response_schema_conformance`: bodies shaped as documented.
Every operation gets positive (schema-valid) and negative data, seeded and bounded; CONTRIBUTING.md
("Fuzzing and property tests") has the longer run. The auth headers are the admin's.
`POST/GET /api/v1/logout` are left out: they would end the session the run uses.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import requests
import schemathesis
from conftest import API, department_fields
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from servers import Server, login

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SEED = 20261125
# Examples per operation and kind of data; FUZZ_EXAMPLES=200 for a longer run (CONTRIBUTING.md, "Fuzzing and property tests").
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
CASES: Counter[str] = Counter()  # cases run per target, reported at the end of the module
STATUSES: Counter[tuple[str, int]] = Counter()


def fuzz_config() -> SchemathesisConfig:
    # The auth headers are ours (the admin's): generated ones would only ever be refused.
    # No NUL characters in generated strings: every string refuses them (PostgreSQL cannot store
    # them; README, compatibility notes), which the document cannot say of each one.
    return SchemathesisConfig.from_dict(
        {"generation": {"database": "none", "with-security-parameters": False, "allow-x00": False}}
    )


class KnownIds:
    """Real ids swapped into about half of the generated path parameters, so that fuzzing also
    reaches existing departments, users and settings (random ids only ever find nothing)."""

    def __init__(self, ids: dict[str, list[str]]) -> None:
        self.ids = ids

    def apply(self, case: Any) -> None:
        for name, value in list((case.path_parameters or {}).items()):
            choices = self.ids.get(name)
            if choices and isinstance(value, str) and len(value) % 2 == 0:
                case.path_parameters[name] = choices[len(value) % len(choices)]


def seed_data(post: Callable[[str, dict[str, Any]], dict[str, Any]], admin_id: str) -> KnownIds:
    """An agent in a department, through the API (`post(path, body)` returns the JSON answer)."""
    agent = post("users.create", {"username": "fuzz.agent", "email": "fuzz@example.com", "name": "Fuzz", "password": "pw-fuzz-1"})
    post("livechat/users/agent", {"username": "fuzz.agent"})
    department = post(
        "livechat/department",
        {"department": department_fields(name="Fuzz department"), "agents": [{"agentId": agent["user"]["_id"]}]},
    )
    return KnownIds(
        {
            "department_id": [department["department"]["_id"]],
            "user_type": ["agent", "manager"],
            "user_id": [agent["user"]["_id"], admin_id],
            "agent_id": [agent["user"]["_id"]],
            "setting_id": ["Omnichannel_enable_department_removal", "API_Default_Count", "DEPARTMENT_LIMIT"],
        }
    )


# Statuses that say nothing about whether the data was valid (schemathesis leaves them out too).
# 412/422: a generated If-Match or Idempotency-Key that the state refuses (a stale ETag, a key
# already used for another body), whatever the data's shape (docs/etags-and-idempotency.md).
UNINFORMATIVE = {401, 403, 404, 409, 412, 422, 429}
# Rocket.Chat answers 400, not 404, when a request names something that does not exist; such an
# answer is about the data set, not about the data's shape, so it counts as a 404 here.
MISSING = {
    "department-not-found", "error-department-not-found", "[department-not-found]",
    "Department not found [error-department-not-found]", "Invalid user [error-invalid-user]", "error-invalid-user",
    "User not found", "Invalid permission", None,  # None: `{"success": false}` (an unknown user or setting)
    "error-webhook-not-found", "error-webhook-delivery-not-found",
}
# A webhook URL of the documented shape is still refused when its host does not resolve to a
# public address: an answer about DNS, not about the data's shape, counted like a missing resource.
NOT_REACHABLE = ("error-invalid-webhook-url: the host does not resolve", "error-webhook-url-not-allowed")


def names_a_missing_resource(response: Any) -> bool:
    if response.status_code != 400:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    return body.get("error") in MISSING or str(body.get("error")).startswith(NOT_REACHABLE)


def schema_mismatch(statuses: Counter[int]) -> str | None:
    """schemathesis's warnings about data generated as valid from the document (its CLI's
    `validation_mismatch` and `low_valid_rate`): every positive case refused with a 4xx that
    speaks of the data, or fewer than 20 % of at least 10 accepted. Either means the document is
    looser than the validation, so a client generated from it would send refused requests."""
    accepted = sum(n for status, n in statuses.items() if 200 <= status < 300)
    refused = sum(n for status, n in statuses.items() if 400 <= status < 500 and status not in UNINFORMATIVE)
    total = accepted + refused
    if total == 0:
        return None
    if accepted == 0:
        return f"every positive case refused ({dict(statuses)})"
    if total >= 10 and accepted / total < 0.2:
        return f"{accepted} of {total} positive cases accepted ({dict(statuses)})"
    return None


def fuzz(schema: Any, call: Any, known: KnownIds, label: str) -> list[str]:
    """Run every operation of `schema` (positive and negative data), returning the failures and
    the schema-mismatch warnings."""
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            statuses: Counter[int] = Counter()  # of this operation and mode, a missing resource as 404
            try:
                fuzz_operation(operation, mode, call, known, label, statuses)
            except Unsatisfiable:
                pass  # nothing to negate: the operation has no parameters and no body
            except Exception as error:  # every failing operation is listed, not only the first
                failures.append(f"{operation.label} ({mode}): {error}")
            if mode is GenerationMode.POSITIVE and (warning := schema_mismatch(statuses)):
                failures.append(f"{operation.label}: schema mismatch: {warning}")
    return failures


def fuzz_operation(operation: Any, mode: GenerationMode, call: Any, known: KnownIds, label: str, statuses: Counter[int]) -> None:
    @FUZZ_SETTINGS
    @seed(SEED)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        known.apply(case)
        CASES[label] += 1
        response = call(case)
        STATUSES[(label, response.status_code)] += 1
        statuses[404 if names_a_missing_resource(response) else response.status_code] += 1

    run()


@pytest.fixture(scope="module", autouse=True)
def report_counts(request: pytest.FixtureRequest) -> Any:
    """Print how many cases ran, and their statuses (shown even when output is captured)."""
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        for label, count in sorted(CASES.items()):
            statuses = ", ".join(f"{status}: {n}" for (where, status), n in sorted(STATUSES.items()) if where == label)
            print(f"\nfuzz {label}: {count} cases ({statuses})", end="")
    CASES.clear()  # pytest may come back to this module (one pass per database): report each once
    STATUSES.clear()


# --- in-process, through the WSGI app, on SQLite and PostgreSQL ---


def test_in_process(app, client, auth, backend):
    """Every operation, logged in as admin, against the app object."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(f"{API}/{path}", json=body, headers=auth.admin)
        assert response.status_code == 200, response.json
        return response.json

    known = seed_data(post, auth.admin["X-User-Id"])
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=fuzz_config())
    schema = schema.exclude(path_regex=r"/logout$")
    failures = fuzz(schema, lambda case: case.call_and_validate(headers=auth.admin, checks=CHECKS), known, f"in-process {backend}")
    assert not failures, "\n\n".join(failures)


# --- over HTTP, against `gunicorn -c gunicorn.conf.py app:app` ---


@pytest.mark.e2e
def test_gunicorn(tmp_path):
    """Every operation over real HTTP: two gunicorn workers on a SQLite file of its own."""
    password = "fuzz-admin-pass-1"
    server = Server(f"sqlite:///{tmp_path / 'fuzz.db'}", tmp_path / "gunicorn.log", password)
    server.env["WEBHOOKS"] = "off"  # endpoints registered with generated URLs must never be called
    with server:
        headers = login(server.base, password)

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = requests.post(f"{server.base}{API}/{path}", json=body, headers=headers, timeout=10)
            assert response.status_code == 200, response.text
            return response.json()

        known = seed_data(post, headers["X-User-Id"])
        schema = schemathesis.openapi.from_url(f"{server.base}/api/openapi.json", config=fuzz_config())
        schema = schema.exclude(path_regex=r"/logout$")
        with requests.Session() as session:
            failures = fuzz(
                schema,
                lambda case: case.call_and_validate(session=session, headers=headers, checks=CHECKS, timeout=10),
                known,
                "gunicorn",
            )
        assert not failures, "\n\n".join(failures)
        assert "Traceback" not in server.output()
