"""Schema-based fuzzing of the REST API: whatever a client sends, the answer is a documented
status with a documented body, and never a server error.

Each operation gets a fresh service. Strategies are built per test rather than through
`schemathesis.pytest.from_fixture`, whose lazy loader does not run under pytest 9.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.service import create_app
from app.settings import Settings
from loops.testing import FunctionModel, reply
from tests.app.api_support import AUTH, api_app

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]


def api_operations() -> list[tuple[str, str]]:
    # Building the app reads no files and starts nothing; only its routes are looked at.
    paths = create_app(Settings(api_token=None)).openapi()["paths"]
    return [
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/")
        for method in operations
    ]


@pytest.mark.parametrize(("method", "path"), api_operations())
def test_no_input_makes_the_api_fail(tmp_path: Path, method: str, path: str) -> None:
    app = api_app(tmp_path, FunctionModel(lambda _: reply("done")))
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    def answers_sensibly(case: schemathesis.Case) -> None:
        assume(still_invalid_when_sent(case))
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    try:
        answers_sensibly()
    finally:
        shutdown_lifespans()


def still_invalid_when_sent(case: schemathesis.Case) -> bool:
    """False for a negative case whose every mutation may be undone on its way out: a missing
    Authorization header (the test sends the token with every request) or a query parameter
    whose value is an empty list (the HTTP client leaves it out, be it an extra parameter or a
    known one such as `cursor`), so what reaches the API may be a valid request."""
    meta = case.meta
    if meta is None:
        return True
    negative = {loc for loc in ParameterLocation if meta.is_negative_at(loc)}
    if not negative:
        return True
    undone = {ParameterLocation.HEADER}
    if any(value == [] for value in (case.query or {}).values()):
        undone.add(ParameterLocation.QUERY)
    return not negative <= undone


def test_every_valid_job_for_a_known_workflow_is_accepted(tmp_path: Path) -> None:
    app = api_app(tmp_path, FunctionModel(lambda _: reply("done")))
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)["/api/jobs"]["POST"]
    workdir = tmp_path / "work"
    workdir.mkdir()

    @given(case=operation.as_strategy(GenerationMode.POSITIVE))
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    def accepted(case: schemathesis.Case) -> None:
        # Generated names almost never name a loaded workflow, nor paths an existing directory.
        case.body = {**case.body, "workflow": "quick", "workdir": str(workdir)}
        response = case.call_and_validate(headers=AUTH, checks=CHECKS)
        assert response.status_code in (200, 202), response.text

    try:
        accepted()
    finally:
        shutdown_lifespans()
