"""The OpenAPI 3.1 document of ``/api/v1``, made from the endpoint table and the pydantic
models' own JSON schemas (JSON Schema 2020-12, which OpenAPI 3.1 uses as it is): what is
validated and what is documented are the same models."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bot.api.problems import PROBLEM_JSON, Problem
from bot.api.routing import Endpoint
from crm_core.models import ApiScope

REF = "#/components/schemas/{model}"
SECURITY = "bearerKey"
# Problems every operation may answer, besides its own.
AUTH_PROBLEMS = {
    401: "no API key, or an unknown or revoked one",
    403: "the key lacks the operation's scope (named in `scope`)",
    429: "the key's requests a minute are used up; `Retry-After` says when to retry",
}
INPUT_PROBLEMS = {422: "invalid parameters or body; `errors` names each field"}
BODY_PROBLEMS = {
    400: "the body is not JSON",
    413: "the body is over 1 MiB",
    415: "the body is not application/json",
}


def build_openapi(endpoints: tuple[Endpoint, ...], *, version: str) -> dict[str, Any]:
    schemas, refs = _component_schemas(endpoints)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(
            endpoint, refs, schemas
        )
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "deskbot CRM API",
            "version": version,
            "description": "One CRM every channel writes into. Authenticate with "
            "`Authorization: Bearer <token>` (`deskbot apikey create`). Errors are RFC 9457 "
            "problem details. Lists are paged by an opaque `cursor`.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                SECURITY: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key's token. Each operation names the scope it needs "
                    f"({', '.join(s.value for s in ApiScope)}) in its security requirement.",
                }
            },
        },
    }


def _component_schemas(
    endpoints: tuple[Endpoint, ...],
) -> tuple[dict[str, Any], dict[tuple[type[BaseModel], str], Any]]:
    wanted: list[tuple[type[BaseModel], Any]] = [(Problem, "serialization")]
    for endpoint in endpoints:
        for model in (endpoint.path_params, endpoint.query, endpoint.body):
            if model is not None:
                wanted.append((model, "validation"))
        for model, _ in endpoint.responses.values():
            wanted.append((model, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(unique, ref_template=REF)
    return dict(top.get("$defs", {})), dict(refs)  # type: ignore[arg-type]


def _operation(
    endpoint: Endpoint, refs: dict[tuple[type[BaseModel], str], Any], schemas: dict[str, Any]
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "description": (endpoint.description + f" Scope: `{endpoint.scope.value}`.").strip(),
        "security": [{SECURITY: [endpoint.scope.value]}],
        "parameters": [
            *_parameters(endpoint.path_params, "path", refs, schemas),
            *_parameters(endpoint.query, "query", refs, schemas),
        ],
    }
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(endpoint.body, "validation")]}},
        }
    responses: dict[str, Any] = {}
    for status, (model, description) in sorted(endpoint.responses.items()):
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": refs[(model, "serialization")]}},
        }
    problems = {**AUTH_PROBLEMS, **endpoint.problems}
    if endpoint.path_params or endpoint.query or endpoint.body:
        problems.update(INPUT_PROBLEMS)
    if endpoint.body is not None:
        problems.update(BODY_PROBLEMS)
    problem_ref = refs[(Problem, "serialization")]
    for status, description in sorted(problems.items()):
        responses[str(status)] = {
            "description": description,
            "content": {PROBLEM_JSON: {"schema": problem_ref}},
        }
    operation["responses"] = responses
    return operation


def _parameters(
    model: type[BaseModel] | None,
    where: str,
    refs: dict[tuple[type[BaseModel], str], Any],
    schemas: dict[str, Any],
) -> list[dict[str, Any]]:
    """One parameter per field of the query or path model, its schema the field's own."""
    if model is None:
        return []
    name = refs[(model, "validation")]["$ref"].rsplit("/", 1)[-1]
    schema = schemas[name]
    required = set(schema.get("required", ()))
    parameters = []
    for field_name, field_schema in schema["properties"].items():
        parameters.append(
            {
                "name": field_name,
                "in": where,
                "required": where == "path" or field_name in required,
                "description": field_schema.get("description", ""),
                "schema": _not_null(field_schema),
            }
        )
    return parameters


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is left out rather than sent as null: drop the null alternative."""
    schema = copy.deepcopy(schema)
    options = schema.pop("anyOf", None)
    if options is not None:
        kept = [option for option in options if option.get("type") != "null"]
        schema.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
        if schema.get("default", 0) is None:
            del schema["default"]
    schema.pop("title", None)
    return schema
