"""Model registry routes (SPEC §9.5; list in OpenAI's shape, §10.2)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from prompt_ledger.api.deps import SessionDep
from prompt_ledger.api.errors import error_responses
from prompt_ledger.db.tables import ProviderName
from prompt_ledger.schemas.models import ModelList, ModelOut, PutModelRequest
from prompt_ledger.services import models as service

router = APIRouter(prefix="/v1/models", tags=["models"])

# ``:path``: model names such as ``meta-llama/Llama-3.1-8B-Instruct`` hold slashes.
ModelNameParam = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$", description="model name")
]


@router.get("", response_model=ModelList, responses=error_responses())
async def list_models(session: SessionDep) -> ModelList:
    """Every model, active or retired, in OpenAI's list shape (``client.models.list()``)."""
    return ModelList(data=[ModelOut.of(m) for m in await service.list_models(session)])


@router.put(
    "/{provider}/{model_name:path}",
    response_model=ModelOut,
    status_code=status.HTTP_200_OK,
    responses={201: {"model": ModelOut, "description": "model added"}, **error_responses()},
)
async def put_model(
    session: SessionDep,
    provider: ProviderName,
    model_name: ModelNameParam,
    body: PutModelRequest,
    response: Response,
) -> ModelOut:
    """Add a model (201; defaults for unsent fields) or update the fields sent (200)."""
    model, created = await service.put_model(session, provider, model_name, changes=body.changes())
    if created:
        response.status_code = status.HTTP_201_CREATED
    return ModelOut.of(model)
