"""Errors as RFC 9457 problem details (``application/problem+json``): a ``type`` URI, the
``title`` of that type, the HTTP ``status``, a ``detail`` for this occurrence, and for invalid
requests ``errors``: one entry per bad field, with a JSON pointer into the body (``pointer``)
or the name of the query/path parameter (``parameter``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://deskbot.dev/problems/"  # identifiers, not necessarily pages


class FieldError(BaseModel):
    detail: str = Field(description="what is wrong with it")
    pointer: str | None = Field(
        default=None, description="JSON pointer into the request body, e.g. #/amount_minor"
    )
    parameter: str | None = Field(default=None, description="the query or path parameter")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(default="about:blank", description="identifies the kind of problem")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str | None = None
    instance: str | None = Field(default=None, description="the request's path")
    errors: list[FieldError] | None = Field(
        default=None, description="invalid request: one entry per bad field"
    )
    scope: str | None = Field(default=None, description="403: the scope the key lacks")


class ProblemError(Exception):
    """Raised anywhere in an API handler: answered as this problem."""

    def __init__(self, problem: Problem, headers: dict[str, str] | None = None) -> None:
        super().__init__(problem.detail or problem.title)
        self.problem = problem
        self.headers = headers or {}


def problem_response(
    request: web.Request, problem: Problem, headers: dict[str, str] | None = None
) -> web.Response:
    problem = problem.model_copy(update={"instance": request.path})
    return web.Response(
        status=problem.status,
        body=problem.model_dump_json(exclude_none=True),
        content_type=PROBLEM_JSON,
        headers=headers or {},
    )


def problem(status: int, title: str, detail: str | None = None, kind: str | None = None) -> Problem:
    return Problem(
        type=PROBLEM_BASE + kind if kind else "about:blank",
        title=title,
        status=status,
        detail=detail,
    )


def _pointer(loc: tuple[int | str, ...]) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in loc]
    return "#/" + "/".join(parts) if parts else "#"


def _message(error: Any) -> str:
    return str(error["msg"]).removeprefix("Value error, ")


def invalid_body(error: ValidationError) -> ProblemError:
    """A body that is not JSON is malformed (400); JSON the model refuses is invalid (422)."""
    items = error.errors(include_url=False)
    if any(item["type"] == "json_invalid" for item in items):
        return ProblemError(
            problem(400, "Malformed request", "The body is not valid JSON.", "malformed-body")
        )
    errors = [
        FieldError(pointer=_pointer(tuple(item["loc"])), detail=_message(item)) for item in items
    ]
    return _invalid(errors)


def invalid_parameters(error: ValidationError) -> ProblemError:
    errors = []
    for item in error.errors(include_url=False):
        name = str(item["loc"][0]) if item["loc"] else None
        errors.append(FieldError(parameter=name, detail=_message(item)))
    return _invalid(errors)


def invalid_field(
    detail: str, *, pointer: str | None = None, parameter: str | None = None
) -> ProblemError:
    return _invalid([FieldError(detail=detail, pointer=pointer, parameter=parameter)])


def _invalid(errors: list[FieldError]) -> ProblemError:
    shown = errors[:20]  # a union's every alternative is an error; the first ones say enough
    found = problem(
        422,
        "Invalid request",
        f"{len(errors)} field(s) are invalid.",
        "invalid-request",
    )
    return ProblemError(found.model_copy(update={"errors": shown}))
