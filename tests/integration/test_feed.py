"""The social feed (docs/community.md, "Social feed"): posts, both feeds with paging, likes and
comments with their counters and XP, visibility (friends-only posts are 404 to strangers), deletes
by authors and moderators, reports, pictures, and the live streams across two replicas."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from server.db.queries import users as user_queries
from tests.conftest import make_settings
from tests.support.appserver import AppServer
from tests.support.community import people
from tests.support.live import listen, personal, replicas, token_of
from tests.support.wsclient import WsClient

LIMITS = {"RATE_LIMIT_ACTIONS": "friend_request=100/3600", "RATE_LIMIT_WRITE": "1000/60"}


@pytest.fixture
async def pair(backend: dict[str, Any]) -> AsyncIterator[tuple[AppServer, AppServer]]:
    async with replicas(backend, **LIMITS) as both:
        yield both


async def befriend(client: httpx.AsyncClient, u: dict[str, Any], a: str, b: str) -> None:
    assert (await client.post("/api/friends", json={"username": b}, headers=u[a]["headers"])).is_success
    assert (await client.post(f"/api/friends/{a}/accept", headers=u[b]["headers"])).is_success


async def make_moderator(server: AppServer, username: str) -> None:
    db = server.resources.db
    user = await user_queries.by_username(db, username)
    await user_queries.update(db, user["id"], role="moderator")
    await server.resources.auth.user_changed(user["id"])


async def post(client: httpx.AsyncClient, who: dict[str, Any], content: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/posts", json={"content": content, **fields}, headers=who["headers"])
    assert response.status_code == 201, response.text
    return dict(response.json())


async def xp_becomes(client: httpx.AsyncClient, who: dict[str, Any], name: str, expected: int) -> None:
    """XP is awarded in the background: wait for the total, then make sure it stays there."""
    deadline = time.monotonic() + 5
    while True:
        xp = (await client.get(f"/api/users/{name}", headers=who["headers"])).json()["xp"]
        if xp == expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert (await client.get(f"/api/users/{name}", headers=who["headers"])).json()["xp"] == expected


async def stream_push(ws: WsClient, channel: str, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The `data` of the next push of `kind` on `channel` (others skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        push = await ws.push("message", timeout=max(0.1, deadline - time.monotonic()))
        if push["channel"] == channel and push["data"].get("type") == kind:
            return dict(push["data"])


async def pages(client: httpx.AsyncClient, who: dict[str, Any], path: str, **params: Any) -> list[list[int]]:
    """Every page of a cursor-paged list, as ids."""
    out: list[list[int]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query, headers=who["headers"])
        assert response.status_code == 200, response.text
        body = response.json()
        out.append([item["id"] for item in body["items"]])
        cursor = body["next"]
        if cursor is None:
            return out


def ids(pages_of_ids: list[list[int]]) -> list[int]:
    return [item for page in pages_of_ids for item in page]


def field_errors(response: httpx.Response) -> set[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return {(d["field"], d["code"]) for d in response.json()["error"]["details"]}


async def test_feeds_likes_comments_xp_and_live_across_replicas(pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "alice", "bob", "carol")
        alice, bob, carol = u["alice"], u["bob"], u["carol"]
        await befriend(client, u, "alice", "bob")
        await xp_becomes(client, alice, "alice", 40)  # first_friend + friend_accepted
        bob_ws = await listen(two, bob)  # bob's tab on the OTHER replica
        carol_ws = await WsClient.connect(two.base_url, token_of(carol))
        try:
            assert (await carol_ws.request("subscribe", channel="live:feed:everyone"))["ok"]
            first = await post(client, alice, "  Hello, world!\r\nSecond line  ")
            assert first["content"] == "Hello, world!\nSecond line"
            assert (first["visibility"], first["group_id"], first["likes"], first["liked"], first["comments"],
                    first["image"], first["can_delete"]) == ("public", None, 0, False, 0, None, True)
            assert first["author"]["username"] == "alice" and first["author"]["level"] == 1
            created = await stream_push(carol_ws, "live:feed:everyone", "post_created")
            assert created["post"]["id"] == first["id"] and created["post"]["content"] == "Hello, world!\nSecond line"
            told = await personal(bob_ws, "feed_post")
            assert told["post"]["id"] == first["id"]

            hidden = await post(client, alice, "only friends", visibility="friends")
            assert (await personal(bob_ws, "feed_post"))["post"]["id"] == hidden["id"]
            carols = [(await post(client, carol, f"carol {n}"))["id"] for n in range(3)]
            mine = await post(client, bob, "bob here", visibility="friends")
            # the friends-only post never reached the everyone stream: the next push there is carol's
            assert (await stream_push(carol_ws, "live:feed:everyone", "post_created"))["post"]["id"] == carols[0]
            await xp_becomes(client, alice, "alice", 40 + 50 + 15 + 15)  # first post +50, two posts +15 each

            # friends feed: bob's friends' posts and his own, any visibility, newest first, paged
            friends = await pages(client, bob, "/api/posts", feed="friends", limit=2)
            assert friends == [[mine["id"], hidden["id"]], [first["id"]]]
            everyone = await pages(client, carol, "/api/posts", feed="everyone", limit=2)
            assert ids(everyone) == [*reversed(carols), first["id"]] and len(everyone) == 2
            assert ids(await pages(client, carol, "/api/posts", feed="friends")) == list(reversed(carols))

            # likes: toggled ten times, counted once, +2 XP to the author once; counters live
            assert (await carol_ws.request("subscribe", channel=f"live:post:{first['id']}"))["ok"]
            path = f"/api/posts/{first['id']}/like"
            for n in range(10):
                response = await (client.post if n % 2 == 0 else client.delete)(path, headers=bob["headers"])
                assert response.json() == {"likes": 1 - n % 2, "liked": n % 2 == 0}
            for _ in range(2):
                assert (await client.post(path, headers=bob["headers"])).json() == {"likes": 1, "liked": True}
            assert (await client.post(path, headers=carol["headers"])).json() == {"likes": 2, "liked": True}
            updated = [await stream_push(carol_ws, f"live:post:{first['id']}", "post_updated") for _ in range(12)]
            assert [e["likes"] for e in updated] == [1, 0] * 5 + [1, 2]
            await xp_becomes(client, alice, "alice", 120 + 2 + 2)  # bob once, carol once
            shown = (await client.get(f"/api/posts/{first['id']}", headers=bob["headers"])).json()
            assert (shown["likes"], shown["liked"], shown["can_delete"]) == (2, True, False)

            # comments: counters, oldest first with paging, live, XP; comment likes
            c1 = (await client.post(f"/api/posts/{first['id']}/comments", json={"content": "nice"},
                                    headers=bob["headers"])).json()
            c2 = (await client.post(f"/api/posts/{first['id']}/comments", json={"content": "agreed"},
                                    headers=carol["headers"])).json()
            assert (c1["post_id"], c1["content"], c1["likes"], c1["liked"], c1["author"]["username"]) == (
                first["id"], "nice", 0, False, "bob")
            live_comment = await stream_push(carol_ws, f"live:post:{first['id']}", "comment_created")
            assert live_comment["comment"]["id"] == c1["id"]
            counts = await stream_push(carol_ws, f"live:post:{first['id']}", "post_updated")
            assert (counts["likes"], counts["comments"]) == (2, 1)
            assert await pages(client, alice, f"/api/posts/{first['id']}/comments", limit=1) == [[c1["id"]], [c2["id"]]]
            for _ in range(3):
                liked = await client.post(f"/api/comments/{c1['id']}/like", headers=alice["headers"])
                assert liked.json() == {"likes": 1, "liked": True}
            assert (await stream_push(carol_ws, f"live:post:{first['id']}", "comment_updated")) == {
                "type": "comment_updated", "id": c1["id"], "likes": 1}
            assert (await client.get(f"/api/posts/{first['id']}", headers=bob["headers"])).json()["comments"] == 2
            # bob: 40 (friend) + 50 + 15 (his post) + 25 + 5 (first comment) + 1 (comment liked)
            await xp_becomes(client, bob, "bob", 40 + 65 + 30 + 1)

            # recovery: carol drops, things change, she resubscribes with `since` and gets them
            await carol_ws.close()
            carol_ws = await WsClient.connect(two.base_url, token_of(carol))
            sub = await carol_ws.request("subscribe", channel=f"live:post:{first['id']}")
            since = {"offset": sub["offset"], "epoch": sub["epoch"]}
            await carol_ws.close()
            assert (await client.delete(path, headers=bob["headers"])).json() == {"likes": 1, "liked": False}
            assert (await client.delete(f"/api/comments/{c2['id']}", headers=carol["headers"])).status_code == 204
            carol_ws = await WsClient.connect(one.base_url, token_of(carol))
            back = await carol_ws.request("subscribe", channel=f"live:post:{first['id']}", since=since)
            assert back["ok"] and back["recovered"] is True, back
            missed = [m["data"] for m in back["missed"]]
            assert [m["type"] for m in missed] == ["post_updated", "comment_deleted", "post_updated"]
            assert missed[1] == {"type": "comment_deleted", "id": c2["id"], "post_id": first["id"]}
            assert (missed[2]["likes"], missed[2]["comments"]) == (1, 1)
        finally:
            await bob_ws.close()
            await carol_ws.close()


async def test_visibility_deletes_moderation_reports_and_bad_input(pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "alice", "bob", "carol", "mod")
        alice, bob, carol, mod = u["alice"], u["bob"], u["carol"], u["mod"]
        await make_moderator(one, "mod")
        await make_moderator(two, "mod")  # the other replica's cached principal too
        await befriend(client, u, "alice", "bob")
        secret = await post(client, alice, "friends only", visibility="friends")
        public = await post(client, alice, "for all")

        # IDOR: a stranger sees nothing of a friends-only post, whatever the route
        base = f"/api/posts/{secret['id']}"
        for method, path, body in (("GET", base, None), ("POST", f"{base}/like", None),
                                   ("DELETE", f"{base}/like", None), ("GET", f"{base}/comments", None),
                                   ("POST", f"{base}/comments", {"content": "hi"}), ("DELETE", base, None),
                                   ("GET", "/api/posts/999999", None)):
            response = await client.request(method, path, json=body, headers=carol["headers"])
            assert (response.status_code, response.json()["error"]["code"]) == (404, "post_not_found"), (method, path)
        report = await client.post("/api/reports", json={"target": "post", "id": secret["id"], "reason": "x"},
                                   headers=carol["headers"])
        assert report.status_code == 404
        assert (await client.get(base, headers=bob["headers"])).json()["content"] == "friends only"
        assert (await client.get(base, headers=mod["headers"])).status_code == 200  # moderators judge reports
        ws = await WsClient.connect(two.base_url, token_of(carol))
        try:
            refused = await ws.request("subscribe", channel=f"live:post:{secret['id']}")
            assert refused["ok"] is False and refused["error"]["code"] == "forbidden", refused
            assert (await ws.request("subscribe", channel=f"live:post:{public['id']}"))["ok"]
            assert (await ws.request("publish", channel=f"live:post:{public['id']}", data={"x": 1}))["ok"] is False
            assert (await ws.request("subscribe", channel="live:feed:nobody"))["ok"] is False
        finally:
            await ws.close()
        # a comment on the friends-only post is just as invisible
        hidden_comment = (await client.post(f"{base}/comments", json={"content": "psst"},
                                            headers=bob["headers"])).json()
        for method in ("POST", "DELETE"):
            response = await client.request(method, f"/api/comments/{hidden_comment['id']}/like",
                                            headers=carol["headers"])
            assert response.status_code == 404
        gone = await client.delete(f"/api/comments/{hidden_comment['id']}", headers=carol["headers"])
        assert gone.status_code == 404

        # visible but not yours: 403
        assert (await client.delete(f"/api/posts/{public['id']}", headers=carol["headers"])).status_code == 403
        carol_comment = (await client.post(f"/api/posts/{public['id']}/comments", json={"content": "spam"},
                                           headers=carol["headers"])).json()
        assert (await client.delete(f"/api/comments/{carol_comment['id']}", headers=bob["headers"])).status_code == 403

        # a member who blocked the author sees none of their posts
        assert (await client.put("/api/blocks/alice", headers=carol["headers"])).is_success
        assert (await client.get(f"/api/posts/{public['id']}", headers=carol["headers"])).status_code == 404
        assert ids(await pages(client, carol, "/api/posts")) == []
        assert (await client.delete("/api/blocks/alice", headers=carol["headers"])).status_code == 204

        # bad input: field errors
        assert ("content", "string_too_long") in field_errors(
            await client.post("/api/posts", json={"content": "x" * 2001}, headers=bob["headers"]))
        assert ("content", "value_error") in field_errors(
            await client.post("/api/posts", json={"content": " \n "}, headers=bob["headers"]))
        assert ("content", "value_error") in field_errors(
            await client.post("/api/posts", json={"content": "bell\u0007"}, headers=bob["headers"]))
        assert ("visibility", "literal_error") in field_errors(
            await client.post("/api/posts", json={"content": "x", "visibility": "secret"}, headers=bob["headers"]))
        assert ("mood", "extra_forbidden") in field_errors(
            await client.post("/api/posts", json={"content": "x", "mood": "happy"}, headers=bob["headers"]))
        assert ("content", "string_too_long") in field_errors(await client.post(
            f"/api/posts/{public['id']}/comments", json={"content": "y" * 1001}, headers=bob["headers"]))
        assert ("cursor", "invalid_cursor") in field_errors(
            await client.get("/api/posts", params={"cursor": "nope"}, headers=bob["headers"]))
        assert ("feed", "literal_error") in field_errors(
            await client.get("/api/posts", params={"feed": "mine"}, headers=bob["headers"]))
        assert ("limit", "out_of_range") in field_errors(
            await client.get("/api/posts", params={"limit": 51}, headers=bob["headers"]))
        no_group = await client.post("/api/posts", json={"content": "x", "group_id": 987654}, headers=bob["headers"])
        assert no_group.status_code == 404
        assert (await client.get("/api/posts", params={"group": 987654}, headers=bob["headers"])).status_code == 404

        # the author deletes: gone for everyone, live on the post's stream
        watcher = await WsClient.connect(two.base_url, token_of(bob))
        try:
            assert (await watcher.request("subscribe", channel=f"live:post:{secret['id']}"))["ok"]
            assert (await client.delete(base, headers=alice["headers"])).status_code == 204
            assert await stream_push(watcher, f"live:post:{secret['id']}", "post_deleted") == {
                "type": "post_deleted", "id": secret["id"]}
        finally:
            await watcher.close()
        assert (await client.get(base, headers=bob["headers"])).status_code == 404
        assert secret["id"] not in ids(await pages(client, bob, "/api/posts", feed="friends"))

        # reports: into the shared queue, with the target and its text; resolving with "delete"
        # removes the post as a moderator (-50 XP to its author)
        bobs = await post(client, bob, "buy cheap gold")
        await xp_becomes(client, bob, "bob", 40 + 30 + 65)  # friend, first comment, first post
        assert (await client.post("/api/reports", json={"target": "post", "id": bobs["id"]},
                                  headers=carol["headers"])).status_code == 422
        assert (await client.post("/api/reports", json={"target": "post", "id": bobs["id"], "username": "bob",
                                                        "reason": "spam"}, headers=carol["headers"])).status_code == 422
        assert (await client.post("/api/reports", json={"target": "post", "id": bobs["id"], "reason": "mine"},
                                  headers=bob["headers"])).status_code == 400  # reporting yourself
        filed = await client.post("/api/reports", json={"target": "post", "id": bobs["id"], "reason": "spam"},
                                  headers=carol["headers"])
        assert filed.status_code == 201, filed.text
        on_comment = await client.post("/api/reports", json={"target": "comment", "id": carol_comment["id"],
                                                             "reason": "rude"}, headers=alice["headers"])
        assert on_comment.status_code == 201
        queue = (await client.get("/api/admin/reports", headers=mod["headers"])).json()["reports"]
        by_id = {r["id"]: r for r in queue}
        item = by_id[filed.json()["id"]]
        assert (item["target"], item["user"], item["text"], item["reason"]) == (
            {"kind": "post", "id": bobs["id"]}, "bob", "buy cheap gold", "spam")
        assert by_id[on_comment.json()["id"]]["target"] == {"kind": "comment", "id": carol_comment["id"]}
        resolved = await client.post(f"/api/admin/reports/{filed.json()['id']}/resolve", json={"action": "delete"},
                                     headers=mod["headers"])
        assert resolved.status_code == 200, resolved.text
        assert (await client.get(f"/api/posts/{bobs['id']}", headers=carol["headers"])).status_code == 404
        await xp_becomes(client, bob, "bob", 40 + 30 + 65 - 50)

        # a moderator deletes someone's comment and post directly: -50 each, once
        assert (await client.delete(f"/api/comments/{carol_comment['id']}", headers=mod["headers"])).status_code == 204
        assert (await client.delete(f"/api/comments/{carol_comment['id']}", headers=mod["headers"])).status_code == 404
        assert (await client.get(f"/api/posts/{public['id']}", headers=alice["headers"])).json()["comments"] == 0
        # carol: her comment earned 25 + 5, its removal took 50
        await xp_becomes(client, carol, "carol", 30 - 50)
        assert (await client.delete(f"/api/posts/{public['id']}", headers=mod["headers"])).status_code == 204
        # alice: 40 (friend) + 50 + 15 + 15 (two posts) - 50
        await xp_becomes(client, alice, "alice", 40 + 80 - 50)


def png(size: tuple[int, int], noise: bool = False) -> bytes:
    buffer = io.BytesIO()
    if noise:  # incompressible: a big file from a modest picture
        Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(buffer, "PNG", compress_level=1)
    else:
        Image.new("RGB", size, (200, 40, 90)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)  # pictures do not depend on the backend
async def test_post_pictures(backend: dict[str, Any]) -> None:
    settings = make_settings(**backend, POST_IMAGE_MAX_BYTES=3 * 1024 * 1024, **LIMITS)
    async with AppServer(settings) as server, server.client() as client:
        u = await people(client, "alice", "bob")
        alice, bob = u["alice"], u["bob"]
        target = await post(client, alice, "look at this")
        path = f"/api/posts/{target['id']}/image"

        def put(who: dict[str, Any], data: bytes, content_type: str = "image/png") -> Any:
            return client.put(path, content=data, headers={**who["headers"], "Content-Type": content_type})

        assert (await put(bob, png((10, 10)))).status_code == 403  # not the author
        assert (await put(alice, b"just some text", "text/plain")).status_code == 415
        assert field_errors(await put(alice, b"just some text, not a picture")) == {("image", "unsupported_image")}
        too_big = await put(alice, b"\0" * (3 * 1024 * 1024 + 1))
        assert too_big.status_code == 413
        assert too_big.json()["error"]["details"][0]["field"] == "image"

        # more than MAX_BODY_BYTES (1 MiB) is fine for this route: the allowance applies
        data = png((800, 600), noise=True)
        assert 1024 * 1024 < len(data) < 3 * 1024 * 1024
        uploaded = await put(alice, data)
        assert uploaded.status_code == 200, uploaded.text
        image = uploaded.json()["image"]
        assert (image["width"], image["height"]) == (800, 600)  # never enlarged
        big = await put(alice, png((2000, 1000)))
        assert (big.status_code, big.json()["error"]["code"]) == (409, "image_already_set")
        for url, width in ((image["url"], 800), (image["small"], 640)):
            served = await client.get(url)
            assert served.status_code == 200 and served.headers["content-type"] == "image/webp"
            assert Image.open(io.BytesIO(served.content)).size == (width, round(600 * width / 800))
        assert (await client.get(image["url"].removesuffix("1280.webp") + "999.webp")).status_code == 404

        wide = await post(client, alice, "panorama")
        reply = await client.put(f"/api/posts/{wide['id']}/image", content=png((2000, 1000)),
                                 headers={**alice["headers"], "Content-Type": "image/png"})
        assert (reply.json()["image"]["width"], reply.json()["image"]["height"]) == (1280, 640)
        shown = (await client.get(f"/api/posts/{wide['id']}", headers=bob["headers"])).json()
        assert shown["image"]["url"].startswith("/media/posts/") and shown["image"]["url"].endswith("-1280.webp")


PLAN_SEED = """
INSERT INTO users (username, email, role, status, xp, level, created_at, updated_at)
SELECT 'user' || g, 'user' || g || '@example.com', 'member', 'active', 0, 1, now(), now()
FROM generate_series(1, 2000) g;
INSERT INTO friendships (user_id, friend_id, status, created_at)
SELECT 1, 1 + g, 'accepted', now() FROM generate_series(1, 30) g;
INSERT INTO friendships (user_id, friend_id, status, created_at) VALUES (1, 500, 'blocked', now());
INSERT INTO posts (author_id, group_id, content, visibility, created_at)
SELECT 1 + (g % 2000), CASE WHEN g % 10 = 0 THEN 1 + (g % 50) END, 'post ' || g,
       CASE WHEN g % 3 = 0 THEN 'friends' ELSE 'public' END, now()
FROM generate_series(1, 100000) g;
INSERT INTO post_comments (post_id, author_id, content, created_at)
SELECT 1 + (g % 5000), 1 + (g % 2000), 'comment ' || g, now() FROM generate_series(1, 50000) g;
INSERT INTO feed_likes (target_kind, target_id, user_id, created_at)
SELECT 'post', 1 + (g % 100000), 1 + (g % 2000), now() FROM generate_series(1, 50000) g;
ANALYZE;
"""


async def test_feed_queries_use_their_indexes(postgres_service: Any) -> None:
    """With realistic volumes in PostgreSQL, the feed's list queries (the functions the service
    runs) read their indexes, never the whole posts or comments table."""
    import asyncpg

    from server.services import feed
    from tests.conftest import fresh_postgres_url
    from tests.integration.test_query_plans import compiled, index_used, plan_nodes, seq_scanned

    url = fresh_postgres_url(postgres_service)
    postgres_service.psql(PLAN_SEED, database=url.rsplit("/", 1)[1])
    cases = [
        # few friends' posts among many: read through the authors' index (with many, PostgreSQL
        # may rather walk the primary key backwards to the first 20: cheap either way)
        (feed.friends_query([1, 2, 3], None, 20), "ix_posts_author_id_id", "posts"),
        (feed.friends_query([1, 2, 3], 50_000, 20), "ix_posts_author_id_id", "posts"),
        (feed.friends_query(list(range(1, 32)), None, 20), None, "posts"),
        (feed.everyone_query(1, None, 20), None, "posts"),  # most posts are public: the primary key
        (feed.everyone_query(1, 40_000, 20), None, "posts"),
        (feed.group_query(7, 90_000, 20), "ix_posts_group_id_id", "posts"),
        (feed.comments_query(42, 100, 20), "ix_post_comments_post_id_id", "post_comments"),
        (feed.liked_query("post", list(range(1, 21)), 3), "pk_feed_likes", "feed_likes"),
    ]
    connection = await asyncpg.connect(url)
    try:
        for query, index, table in cases:
            raw = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {compiled(query)}")
            nodes = list(plan_nodes(json.loads(raw)[0]["Plan"]))
            assert index is None or index in index_used(nodes), (index, [n["Node Type"] for n in nodes])
            assert table not in seq_scanned(nodes), (table, nodes)
    finally:
        await connection.close()
