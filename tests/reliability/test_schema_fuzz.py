"""Schemathesis against a real ``promptledger serve``: every operation of the OpenAPI schema, with
the API key, positive (schema-valid) and negative (schema-violating) requests. Checks: no 5xx,
documented status codes, documented content types, headers and response bodies that match
the schema, and schema-violating input refused with a 4xx.

``RELIABILITY_PROFILE=full`` (``make reliability``) runs several hundred cases per operation
and mode; the default (CI) profile runs a few dozen.

Any failure is shrunk by Hypothesis to a minimal request and reported with a ``curl`` line.
(The first runs found 5xx answers to versions over 2**31-1; fixed, see docs/reliability.md.)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.reliability.conftest import FULL
from tests.reliability.harness import API_KEY, Stack
from tests.reliability.invariants import note

pytestmark = [pytest.mark.postgres]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300" if FULL else "40"))
SEEDED_PROMPT = "fz"
SEEDED_TRACKED = "fz.tracked"
POSITIVE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
BASIC_CHECKS = [not_a_server_error, content_type_conformance]
NEGATIVE_CHECKS = [*BASIC_CHECKS, negative_data_rejection]
BODY = ParameterLocation.BODY


@pytest.fixture(scope="module")
def seeded(api_server: Stack) -> Iterator[str]:
    """A full-mode and a tracking prompt the cases are steered towards, so generated
    requests reach past 404 into rendering, the ledger and the provider."""
    with httpx.Client(base_url=api_server.base_url, headers={"X-API-Key": API_KEY}) as http:
        r = http.put(f"/v1/prompts/{SEEDED_PROMPT}", json={"template_source": "fuzz {{ a }}"})
        assert r.status_code in (200, 201), r.text
        body = {"prompts": [{"name": SEEDED_TRACKED, "template_source": "tracked {{ a }}"}]}
        assert http.post("/v1/prompts/register-code", json=body).status_code == 200
    yield api_server.base_url


@pytest.fixture(scope="module")
def schema(seeded: str) -> Any:
    loaded = schemathesis.openapi.from_url(f"{seeded}/openapi.json")
    loaded.config.base_url = seeded
    return loaded


def steer(case: Any, data: st.DataObject) -> None:
    """Half of the cases name the seeded prompts and a real model instead of random ones."""
    if not data.draw(st.booleans(), label="steer"):
        return
    path = case.path_parameters
    if path and "name" in path:
        tracking = "execute" in case.path or "history" in case.path
        path["name"] = SEEDED_TRACKED if tracking else SEEDED_PROMPT
    if isinstance(case.body, dict):
        if "prompt_name" in case.body:
            case.body["prompt_name"] = SEEDED_PROMPT
        if "model_name" in case.body:
            case.body["model_name"] = "gpt-4o-mini"


def fuzz(
    operation: Any,
    mode: GenerationMode,
    checks: list[Any],
    session: requests.Session,
    tally: Counter[str],
    statuses: Counter[int],
) -> Any:
    """A Hypothesis test over one operation's generated cases."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        headers = {"X-API-Key": API_KEY}
        if mode.is_positive:
            steer(case, data)
        elif case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
            headers = {}  # the case itself breaks the headers (the key among them)
        response = case.call(session=session, headers=headers)
        tally[operation.label] += 1
        statuses[response.status_code] += 1
        if not mode.is_positive and (
            response.status_code == 413 or not (case.meta and case.meta.is_negative_at(BODY))
        ):
            # 413 (a generated body over MAX_REQUEST_BYTES) is a refusal too. And a query
            # string is text: "0.0" for a date-time is not "a number" (pydantic reads it as a
            # Unix time), so refusal is only demanded of schema-violating bodies.
            case.validate_response(response, checks=BASIC_CHECKS, headers=headers)
            return
        case.validate_response(response, checks=checks, headers=headers)

    return run


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_survives_generated_requests(schema: Any, mode: GenerationMode) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    checks = POSITIVE_CHECKS if mode.is_positive else NEGATIVE_CHECKS
    session = requests.Session()
    tally: Counter[str] = Counter()
    statuses: Counter[int] = Counter()

    unsatisfiable = []
    for operation in operations:
        try:
            fuzz(operation, mode, checks, session, tally, statuses)()
        except Unsatisfiable:  # nothing to violate: no parameters and no body (GET /health)
            unsatisfiable.append(operation.label)

    note(
        f"fuzz {mode.value}: {sum(tally.values())} cases over {len(tally)} operations "
        f"({EXAMPLES} per operation at most); statuses {dict(sorted(statuses.items()))}"
    )
    if unsatisfiable:
        note(f"fuzz {mode.value}: no such cases possible for {unsatisfiable}")
    assert set(tally) | set(unsatisfiable) == {op.label for op in operations}
    assert len(unsatisfiable) <= 3
