"""/v1/models: the configured model names in OpenAI's shape, for clients that probe models."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from batchgate.api.auth import Caller, current_caller
from batchgate.api.errors import not_found
from batchgate.api.schemas import errors

router = APIRouter(tags=["models"])


class ModelObject(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelObject]


def _model(request: Request, alias: str) -> dict[str, Any]:
    vendors = request.app.state.config.vendors_for(alias)
    # `owned_by` names the vendors a (possibly load-balanced) name runs on.
    return {"id": alias, "object": "model", "created": 0, "owned_by": ",".join(vendors)}


@router.get("/v1/models", response_model=ModelList, responses=errors(401))
def list_models(request: Request, _: Caller = Depends(current_caller)) -> dict[str, Any]:
    """Every `model_name` of the config (what a batch line's `model` may be)."""
    return {
        "object": "list",
        "data": [_model(request, a) for a in request.app.state.config.aliases],
    }


@router.get("/v1/models/{model}", response_model=ModelObject, responses=errors(401, 404))
def get_model(model: str, request: Request, _: Caller = Depends(current_caller)) -> dict[str, Any]:
    if not request.app.state.config.deployments_for(model):
        raise not_found("model", model)
    return _model(request, model)
