"""Search (issue 16): PostgreSQL full-text search and SQLite FTS5 behind one endpoint; ranked,
highlighted, cursor-paged, permissions inside the query."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.appserver import AppServer
from tests.support.community import people, say


async def search(client: httpx.AsyncClient, who: dict[str, Any], **params: Any) -> httpx.Response:
    return await client.get("/api/search", params=params, headers=who["headers"])


def texts(page: dict[str, Any]) -> list[str]:
    return ["".join(text for text, _ in hit["highlight"]) for hit in page["messages"]]


async def test_messages_are_ranked_highlighted_and_edits_and_deletes_count(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob")
        alice, bob = u["alice"], u["bob"]
        await say(client, alice, "room:general", {"text": "who wants to build a redstone farm tonight"})
        strong = await say(client, alice, "room:general", {"text": "redstone redstone: the redstone builders meet"})
        await say(client, alice, "room:general", {"text": "nothing to see here"})
        page = (await search(client, bob, q="redstone")).json()
        assert page["messages"][0]["offset"] == strong  # most mentions first
        assert len(page["messages"]) == 2 and page["next_cursor"] is None
        first = page["messages"][0]
        assert first["channel"] == "room:general" and first["from"]["username"] == "alice"
        assert [text for text, matched in first["highlight"] if matched] == ["redstone"] * 3
        assert "".join(text for text, _ in first["highlight"]) == "redstone redstone: the redstone builders meet"
        # stemming: "building" finds "build", "builder" finds "builders"
        assert texts((await search(client, bob, q="building")).json()) == ["who wants to build a redstone farm tonight"]
        assert [h["offset"] for h in (await search(client, bob, q="builder")).json()["messages"]] == [strong]
        # two words: both must match
        assert texts((await search(client, bob, q="redstone farm")).json()) == [
            "who wants to build a redstone farm tonight"]

        farm = page["messages"][1]["offset"]
        await client.patch(f"/api/channels/room:general/messages/{farm}", json={"data": {"text": "a wheat field"}},
                           headers=alice["headers"])
        assert (await search(client, bob, q="farm")).json()["messages"] == []
        assert [h["offset"] for h in (await search(client, bob, q="wheat")).json()["messages"]] == [farm]
        await client.delete(f"/api/channels/room:general/messages/{strong}", headers=alice["headers"])
        assert (await search(client, bob, q="builders")).json()["messages"] == []


async def test_permissions_are_inside_the_query_and_pages_are_full(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob", "carol")
        alice, bob, carol = u["alice"], u["bob"], u["carol"]
        await client.post("/api/rooms", json={"name": "vault", "private": True}, headers=carol["headers"])
        dm = (await client.post("/api/dms", json={"username": "carol"}, headers=alice["headers"])).json()["channel"]
        for n in range(12):  # many matches bob may not see, newer than the ones he may
            await say(client, carol, "room:vault", {"text": f"diamond stash number {n}"})
            await say(client, alice, dm, {"text": f"diamond trade {n}"})
        public = [await say(client, alice, "room:general", {"text": f"public diamond {n}"}) for n in range(5)]

        offsets, cursor, pages = [], None, 0
        while True:
            params = {"q": "diamond", "limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await search(client, bob, **params)).json()
            pages += 1
            assert all(hit["channel"] == "room:general" for hit in page["messages"])
            offsets += [hit["offset"] for hit in page["messages"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert len(page["messages"]) == 2  # never short while matches remain
        assert sorted(offsets) == public and len(set(offsets)) == 5 and pages == 3
        # the members see theirs
        carol_hits = (await search(client, carol, q="diamond", limit=50)).json()["messages"]
        assert {h["channel"] for h in carol_hits} == {"room:vault", dm, "room:general"}
        assert len(carol_hits) == 29
        # one channel only; a channel you cannot read finds nothing (not an error that reveals it)
        only_dm = (await search(client, alice, q="diamond", channel=dm, limit=50)).json()["messages"]
        assert {h["channel"] for h in only_dm} == {dm} and len(only_dm) == 12
        assert (await search(client, bob, q="diamond", channel="room:vault")).json()["messages"] == []


async def test_members_by_name_and_bad_searches(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "steve", "steven", "stevenson", "alex")
        await client.patch("/api/users/me", json={"display_name": "Big Steve"}, headers=u["alex"]["headers"])
        found = (await search(client, u["alex"], q="steve", type="users")).json()
        assert [p["username"] for p in found["users"]] == ["steve", "steven", "stevenson", "alex"]
        paged = (await search(client, u["alex"], q="steve", type="users", limit=2)).json()
        rest = (await search(client, u["alex"], q="steve", type="users", limit=2, cursor=paged["next_cursor"])).json()
        assert [p["username"] for p in paged["users"] + rest["users"]] == ["steve", "steven", "stevenson", "alex"]
        assert (await search(client, u["alex"], q="100%_", type="users")).json()["users"] == []

        for params, field in (({"q": ""}, "q"), ({"q": "x" * 201}, "q"), ({"q": "a\x01b"}, "q"),
                              ({"q": "x", "type": "rooms"}, "type"), ({"q": "x", "cursor": "garbage!"}, "cursor"),
                              ({"q": "x", "limit": 0}, "limit")):
            response = await search(client, u["alex"], **params)
            assert response.status_code == 422, (params, response.text)
            assert response.json()["error"]["details"][0]["field"] == field
        # query syntax is text, never an error
        for q in ('"unbalanced', "a OR", "-", "NEAR(", "*", "'; drop table messages; --"):
            assert (await search(client, u["alex"], q=q)).status_code == 200, q
        assert (await client.get("/api/search", params={"q": "x"})).status_code == 401
