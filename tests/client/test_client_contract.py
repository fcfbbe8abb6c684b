"""The client's models agree with the server's response schemas, and it covers every route.

The client keeps its own models (tolerant of new fields, no server imports); this test reads
the server's OpenAPI document so that a field renamed or added on either side fails here.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import pydantic
import pytest
from pydantic import BaseModel

from prompt_ledger.api.app import create_app
from prompt_ledger.client import (
    Analytics,
    Diff,
    Execution,
    History,
    Label,
    Page,
    Prompt,
    PromptEvent,
    PromptSummary,
    SavedPrompt,
    Submission,
    Version,
)
from prompt_ledger.client._core import _Registered
from prompt_ledger.client.models import Model, ModelList, ResolvedVersion
from prompt_ledger.config import Settings


class VersionItems(BaseModel):
    items: list[Version]


class EventItems(BaseModel):
    items: list[PromptEvent]


class LabelItems(BaseModel):
    items: list[Label]


# (method, path, status) -> the model the client parses that answer into
ROUTES: dict[tuple[str, str, str], type[BaseModel]] = {
    ("PUT", "/v1/prompts/{name}", "200"): SavedPrompt,
    ("PUT", "/v1/prompts/{name}", "201"): SavedPrompt,
    ("GET", "/v1/prompts/{name}", "200"): Prompt,
    ("GET", "/v1/prompts", "200"): Page[PromptSummary],
    ("GET", "/v1/prompts/{name}/versions", "200"): VersionItems,
    ("POST", "/v1/prompts/{name}/versions/{number}:activate", "200"): Prompt,
    ("GET", "/v1/prompts/{name}/events", "200"): EventItems,
    ("POST", "/v1/executions:run", "200"): Execution,
    ("POST", "/v1/executions:submit", "202"): Submission,
    ("GET", "/v1/executions", "200"): Page[Execution],
    ("GET", "/v1/executions/{execution_id}", "200"): Execution,
    ("POST", "/v1/executions/{execution_id}:cancel", "200"): Execution,
    ("POST", "/v1/prompts/register-code", "200"): _Registered,
    ("POST", "/v1/prompts/{name}/execute", "200"): Execution,
    ("POST", "/v1/prompts/{name}/execute", "202"): Submission,
    ("GET", "/v1/prompts/{name}/history", "200"): History,
    ("POST", "/v1/prompts/{name}:convert", "200"): Prompt,
    ("GET", "/v1/prompts/{name}/resolve", "200"): ResolvedVersion,
    ("GET", "/v1/analytics/prompts", "200"): Analytics,
    ("GET", "/v1/prompts/{name}/labels", "200"): LabelItems,
    ("PUT", "/v1/prompts/{name}/labels/{label}", "200"): Label,
    ("PUT", "/v1/prompts/{name}/labels/{label}", "201"): Label,
    ("GET", "/v1/prompts/{name}/diff", "200"): Diff,
    ("GET", "/v1/models", "200"): ModelList,
    ("PUT", "/v1/models/{provider}/{model_name}", "200"): Model,
    ("PUT", "/v1/models/{provider}/{model_name}", "201"): Model,
}
# Success answers without a body: the client returns None for them.
BODILESS = {("DELETE", "/v1/prompts/{name}/labels/{label}", "204")}


@pytest.fixture(scope="module")
def openapi(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=sqlite_url,
        api_key="contract-test-key-123",  # type: ignore[arg-type]
        promptledger_home=tmp_path_factory.mktemp("contract"),
    )
    return create_app(settings).openapi()


def answers(spec: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    found = {}
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if (method.upper(), path, status) in BODILESS:
                    assert "content" not in response
                    continue
                if status.startswith("2"):
                    schema = response["content"]["application/json"]["schema"]
                    found[(method.upper(), path, status)] = schema
    return found


def resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return resolve(option, spec)
    return schema


def models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]
    return []


def compare(model: type[BaseModel], schema: dict[str, Any], spec: dict[str, Any], at: str) -> None:
    schema = resolve(schema, spec)
    if schema.get("type") == "array":
        schema = resolve(schema["items"], spec)
    if "additionalProperties" in schema and "properties" not in schema:
        # a dict keyed by mode on the server, a model with one field per mode in the client
        for name, field in model.model_fields.items():
            for sub in models_in(field.annotation):
                compare(sub, schema["additionalProperties"], spec, f"{at}.{name}")
        return
    fields = {f.alias or name: f for name, f in model.model_fields.items() if not f.exclude}
    assert set(fields) == set(schema["properties"]), at
    required = set(schema.get("required", []))
    for name, field in fields.items():
        if field.is_required():
            assert name in required, f"{at}.{name}: the client requires what the server may omit"
        for sub in models_in(field.annotation):
            compare(sub, schema["properties"][name], spec, f"{at}.{name}")


def test_the_client_parses_every_route(openapi: dict[str, Any]) -> None:
    assert set(answers(openapi)) == set(ROUTES)


@pytest.mark.parametrize("route", list(ROUTES), ids=" ".join)
def test_models_match_the_server(openapi: dict[str, Any], route: tuple[str, str, str]) -> None:
    compare(ROUTES[route], answers(openapi)[route], openapi, " ".join(route))


def test_models_ignore_new_fields() -> None:
    event = {"type": "created", "version_number": None, "previous_version_number": None}
    parsed = PromptEvent.model_validate({**event, "created_at": "2025-01-01T00:00:00Z", "x": 1})
    assert parsed.type == "created"
    with pytest.raises(pydantic.ValidationError):
        parsed.type = "activated"  # type: ignore[misc]  # results are immutable
