"""Typed dependencies so routes read like sentences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from storage.tables import ApiKey
from tunebridge import api_keys
from tunebridge.api_keys import Scope
from tunebridge.jobs import Actor
from tunebridge.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require(scope: Scope) -> Callable[[Request, Runtime], ApiKey]:
    def dependency(request: Request, runtime: RuntimeDep) -> ApiKey:
        key = api_keys.authenticate(db=runtime.db, clock=runtime.clock,
                                    token=bearer_token(request))
        api_keys.require_scope(key, scope)
        request.state.api_key_id = key.id
        return key

    return dependency


ReadKey = Annotated[ApiKey, Depends(require(Scope.READ))]
DatasetWriteKey = Annotated[ApiKey, Depends(require(Scope.DATASETS_WRITE))]
JobWriteKey = Annotated[ApiKey, Depends(require(Scope.JOBS_WRITE))]
JobCancelKey = Annotated[ApiKey, Depends(require(Scope.JOBS_CANCEL))]
AdminKey = Annotated[ApiKey, Depends(require(Scope.ADMIN))]


def actor_for(key: ApiKey, request: Request) -> Actor:
    remote = request.client.host if request.client else None
    return Actor(name=f"key:{key.name}({key.id})", source="http", remote=remote)
