"""Check a real answer against the server's own OpenAPI document.

schemathesis checks every answer it provokes, but some answers it cannot reach: a passkey
ceremony needs an authenticator, the plugin API a server key, a report queue something reported.
The tests that do reach them call `assert_conforms` on what they got, so a response model that
drifts from its handler fails there too.
"""

from __future__ import annotations

from typing import Any

import httpx
from jsonschema import Draft202012Validator


async def openapi_document(client: httpx.AsyncClient) -> dict[str, Any]:
    """The document the server under test serves (fetched once per client)."""
    cached = getattr(client, "_vonix_openapi", None)
    if cached is None:
        response = await client.get("/api/openapi.json")
        assert response.status_code == 200, response.text
        cached = response.json()
        client._vonix_openapi = cached  # type: ignore[attr-defined]
    return cached


def response_schema(document: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    """The JSON Schema documented for `method path` answering `status` (path as templated: `{id}`)."""
    operation = document["paths"][path][method.lower()]
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {path} does not document {status}"
    schema = response["content"]["application/json"]["schema"]
    # `$ref`s point into the document's components: validate with them beside the schema.
    return {**schema, "components": document["components"]}


async def assert_conforms(client: httpx.AsyncClient, response: httpx.Response, method: str, path: str) -> Any:
    """Fail unless `response` is documented for `method path` and its body matches the schema."""
    document = await openapi_document(client)
    schema = response_schema(document, method, path, response.status_code)
    body = response.json()
    errors = sorted(Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{method} {path} {response.status_code}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:5])
    return body
