"""`api(...)`: a Starlette route that carries its own contract, declared where the route is defined.

Most of an operation's contract is read from the handler itself (server/openapi/introspect.py: the
body model it passes to `read_json`, the query parameters it reads, the permission of its
`@requires`, the statuses and `AppError`s it constructs); `api(...)` adds what code cannot say:
the response schema, error codes raised deeper in a service, a summary, the bot/server-key auth
kinds. The generator (server/openapi/document.py) walks `app.routes`, so a route added without
`api(...)` (and not explicitly left out with `include_in_schema=False`) fails the contract test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.convertors import IntegerConvertor
from starlette.routing import Route

Auth = Literal["none", "optional", "member", "admin", "bot", "server"]
ErrorSpec = str | tuple[int, str]


@dataclass(frozen=True)
class Media:
    """A non-JSON response body (an image, Prometheus text, a redirect's empty body)."""

    media_type: str | None
    description: str = ""
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    headers: Mapping[str, str] = field(default_factory=dict)  # header name -> description


@dataclass(frozen=True)
class ApiSpec:
    """What `api(...)` records about one route; `None` fields are inferred from the handler."""

    summary: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    auth: Auth | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    body_media: Media | None = None  # a raw upload (image bytes) instead of a JSON body
    query: type[BaseModel] | None = None
    # status -> a pydantic model, a JSON Schema dict, None (no body) or Media(...) (non-JSON body)
    ok: Mapping[int, Any] | None = None
    errors: tuple[ErrorSpec, ...] = ()
    examples: Mapping[str, Any] | None = None  # request body examples, name -> value
    deprecated: bool = False


# An `{id:int}` segment matches at most 18 digits: every id fits a signed 64-bit column, so a
# longer number is a 404 (no such route) instead of an overflow deep in the database driver.
MAX_ID_DIGITS = 18


class ApiRoute(Route):
    """A Route with its `ApiSpec`; serves like `Route`, except `{x:int}` segments are bounded."""

    spec: ApiSpec

    def __init__(self, path: str, endpoint: Callable[..., Any], *, methods: Sequence[str], spec: ApiSpec,
                 name: str | None = None) -> None:
        super().__init__(path, endpoint, methods=list(methods), name=name)
        self.spec = spec
        pattern = self.path_regex.pattern
        for param, convertor in self.param_convertors.items():
            if isinstance(convertor, IntegerConvertor):
                pattern = pattern.replace(f"(?P<{param}>[0-9]+)", f"(?P<{param}>[0-9]{{1,{MAX_ID_DIGITS}}})")
        self.path_regex = re.compile(pattern)


def api(path: str, endpoint: Callable[..., Any], methods: Sequence[str], *, name: str | None = None,
        summary: str | None = None, description: str | None = None, tags: Sequence[str] = (),
        auth: Auth | None = None, body: type[BaseModel] | None = None, body_required: bool = True,
        body_media: Media | None = None, query: type[BaseModel] | None = None,
        ok: Mapping[int, Any] | None = None, errors: Sequence[ErrorSpec] = (),
        examples: Mapping[str, Any] | None = None, deprecated: bool = False) -> ApiRoute:
    """The route, described. `ok` maps success statuses to a model/schema (default: inferred, any object)."""
    spec = ApiSpec(summary=summary, description=description, tags=tuple(tags), auth=auth, body=body,
                   body_required=body_required, body_media=body_media, query=query, ok=ok,
                   errors=tuple(errors), examples=examples, deprecated=deprecated)
    return ApiRoute(path, endpoint, methods=methods, spec=spec, name=name)


BINARY = {"type": "string", "format": "binary"}
# A raw picture upload (the server sniffs and re-encodes it) and a served, content-addressed picture.
IMAGE_UPLOAD = Media("image/*", "The picture's bytes (PNG, JPEG or WebP).", schema=BINARY)
IMAGE_FILE: Mapping[int, Any] = {200: Media("image/webp", "The picture.", schema=BINARY),
                                 304: Media(None, "Not modified (the ETag matched).")}
