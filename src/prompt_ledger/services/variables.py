"""A version's ``variables_schema`` (SPEC §9.1): JSON Schema draft 2020-12, checked when the
version is saved and enforced on every run before any row is written.

The only module that imports ``jsonschema``. ``$ref`` resolves only inside the schema
itself: nothing is ever fetched over the network (``referencing``'s default registry
retrieves nothing), and an unresolvable reference fails the run as a validation error.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from referencing.exceptions import Unresolvable

from prompt_ledger.errors import ValidationFailed

_MAX_REPORTED = 10


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise ``ValidationFailed`` unless ``schema`` is a valid draft 2020-12 schema."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValidationFailed(
            f"variables_schema is not a valid JSON Schema (draft 2020-12) at "
            f"{exc.json_path}: {_short(exc.message)}",
            details={"field": "variables_schema", "path": exc.json_path},
        ) from None


def validate(schema: Mapping[str, Any], variables: Mapping[str, Any]) -> None:
    """Raise ``ValidationFailed`` naming the failing path when ``variables`` do not match.

    ``details.errors`` lists up to ten failures (path and message), the most relevant first.
    """
    validator = _validator(json.dumps(schema, sort_keys=True))
    try:
        errors = list(validator.iter_errors(dict(variables)))
    except Unresolvable as exc:
        raise ValidationFailed(
            f"variables_schema has a $ref that cannot be resolved: {_short(str(exc))}",
            details={"field": "variables_schema"},
        ) from None
    if not errors:
        return
    first = best_match(errors)
    assert first is not None
    ordered = [first, *(e for e in errors if e is not first)][:_MAX_REPORTED]
    reported = [{"path": _path(e), "message": _short(e.message)} for e in ordered]
    raise ValidationFailed(
        f"variables do not match the version's variables_schema at {reported[0]['path']}: "
        f"{reported[0]['message']}",
        details={"path": reported[0]["path"], "errors": reported},
    )


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    """One compiled validator per distinct schema (versions are immutable, so few)."""
    return Draft202012Validator(json.loads(schema_json))


def _path(error: ValidationError) -> str:
    """The JSON path of the failing value; for a missing property, the property's path."""
    path = error.json_path
    if error.validator == "required" and isinstance(error.instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [name for name in required if name not in error.instance]
        if missing:
            return f"{path}.{missing[0]}"
    return path


def _short(text: str) -> str:
    return text if len(text) <= 300 else text[:297] + "..."
