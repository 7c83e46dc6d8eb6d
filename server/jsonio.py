"""JSON in and out with orjson, and body validation into pydantic schemas.

`read_json` is the single entry for request bodies: it checks the content type (415), parses
(400 `invalid_json`) and validates (422 `validation_failed` with one entry per bad field), so
handlers only ever see a valid model.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse as _StarletteJSONResponse

Model = TypeVar("Model", bound=BaseModel)


class JSONResponse(_StarletteJSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default, option=orjson.OPT_NON_STR_KEYS)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def is_json_content_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_json_value(request: Request) -> Any:
    from server.errors import BadRequest, InvalidJson, UnsupportedMediaType

    if not is_json_content_type(request.headers.get("content-type")):
        raise UnsupportedMediaType()
    body = await request.body()
    if not body:
        raise BadRequest("The request body is empty; send a JSON object.", code="empty_body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"The request body is not valid JSON: {exc.msg} at position {exc.pos}.") from None


async def read_json(request: Request, model: type[Model]) -> Model:
    await read_json_value(request)  # content type and syntax, with their own errors
    return validate_json(model, await request.body())  # Starlette keeps the body: no second read


def validate_json(model: type[Model], body: bytes) -> Model:
    """Strict JSON validation: a value must already have the type the schema (and the OpenAPI
    document) says: `false` is not the integer 0 and "5" is not 5. Strings still become the
    types JSON has no literal for (datetimes, enums), as the JSON mode of strict pydantic allows."""
    from server.errors import ValidationFailed

    try:
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise ValidationFailed(details=validation_details(exc)) from None


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "body",
            "code": error["type"],
            "message": error["msg"],
        }
        for error in exc.errors(include_url=False, include_input=False)
    ]


@overload
def query_int(request: Request, name: str, low: int, high: int, default: int) -> int: ...


@overload
def query_int(request: Request, name: str, low: int, high: int, default: None = None) -> int | None: ...


def query_int(request: Request, name: str, low: int, high: int, default: int | None = None) -> int | None:
    """An integer query parameter in [low, high]; 422 with a field error otherwise (never clamped).
    Absent means `default`; present but empty (`?limit=`) is not an integer and is refused, as
    the OpenAPI document says (schemathesis' negative-data check sent one to the report queue)."""
    from server.errors import ValidationFailed

    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(details=[{"field": name, "code": "int_parsing",
                                         "message": "must be an integer"}]) from None
    if not low <= value <= high:
        raise ValidationFailed(details=[{"field": name, "code": "out_of_range",
                                         "message": f"must be between {low} and {high}"}])
    return value
