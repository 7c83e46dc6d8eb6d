"""Request bodies are validated strictly (server/jsonio.py): a value must have the JSON type the
schema and the OpenAPI document give it. Lax pydantic turned `false` into the integer 0 and "5"
into 5, so a client bug or a fuzzer's probe was stored instead of refused."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.accounts import bearer, login, make_admin, register
from tests.support.appserver import AppServer


@pytest.mark.parametrize("position", [False, True, "5", 5.5])
async def test_a_value_of_the_wrong_json_type_is_refused(app_server: AppServer, position: Any) -> None:
    async with app_server.client() as client:
        await register(client, "strict_admin")
        await make_admin(app_server, "strict_admin")
        headers = bearer((await login(client, "strict_admin"))["access_token"])
        refused = await client.post("/api/admin/forum/categories", headers=headers,
                                    json={"name": "Wrong type", "position": position})
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "validation_failed"
        assert [d["field"] for d in error["details"]] == ["position"]
        # The right types still pass, and a string still becomes what JSON has no literal for.
        made = await client.post("/api/admin/forum/categories", headers=headers,
                                 json={"name": "Right type", "position": 5})
        assert made.status_code == 201, made.text
        assert made.json()["position"] == 5


async def test_a_channel_name_with_a_trailing_newline_is_refused(app_server: AppServer) -> None:
    """Python's `$` also matches before a final newline: the REST channel check must match the
    whole name, as the websocket parser does (found by fuzzing the parser)."""
    async with app_server.client() as client:
        await register(client, "strict_member")
        headers = bearer((await login(client, "strict_member"))["access_token"])
        for method in ("GET", "POST"):
            response = await client.request(method, "/api/channels/room:general%0A/messages", headers=headers,
                                            **({"json": {"data": {"text": "hi"}}} if method == "POST" else {}))
            assert response.status_code == 422, (method, response.text)
            assert response.json()["error"]["details"][0]["code"] == "invalid_channel"


async def test_an_empty_integer_query_parameter_is_refused(app_server: AppServer) -> None:
    """`?limit=` is not an integer (schemathesis' negative-data check found the report queue taking
    it as "no limit given"); an absent one still means the default."""
    async with app_server.client() as client:
        await register(client, "strict_mod")
        await make_admin(app_server, "strict_mod")
        headers = bearer((await login(client, "strict_mod"))["access_token"])
        for path in ("/api/admin/reports?limit=", "/api/channels/room:general/messages?limit=",
                     "/api/admin/reports?before="):
            refused = await client.get(path, headers=headers)
            assert refused.status_code == 422, (path, refused.text)
            assert refused.json()["error"]["details"][0]["code"] == "int_parsing"
        assert (await client.get("/api/admin/reports", headers=headers)).status_code == 200
        assert (await client.get("/api/admin/reports?limit=5", headers=headers)).status_code == 200
