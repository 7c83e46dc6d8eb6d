"""Avatars (issue 16) through the real app on both backends: upload, serve, replace, delete, share,
refuse, limit; live `profile` events on the member's own channel. MEDIA_DIR is the test's tmp_path.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from server.db.queries import users as user_queries
from server.media.avatars import process_avatar
from server.media.urls import avatar_urls, uploaded_avatar
from tests.conftest import make_settings
from tests.support.accounts import PASSWORD, register
from tests.support.appserver import AppServer
from tests.support.community import people
from tests.support.services import free_port
from tests.support.wsclient import WsClient

AVATAR = "/api/users/me/avatar"
MIB = 1024 * 1024
IMMUTABLE = "public, max-age=31536000, immutable"


def image_bytes(colour: tuple[int, int, int], fmt: str = "PNG", size: tuple[int, int] = (120, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return buffer.getvalue()


def noise_png(side: int) -> bytes:
    """Random pixels do not compress: about side * side * 3 bytes of valid PNG."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def key_of(data: bytes) -> str:
    return process_avatar(data, 4 * MIB).key


def stored(media: Path) -> list[str]:
    folder = media / "avatars"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def files_of(key: str) -> list[str]:
    return [f"{key}-256.webp", f"{key}-64.webp"]


def field_errors(response: httpx.Response) -> list[tuple[str, str]]:
    return [(d["field"], d["code"]) for d in response.json()["error"]["details"]]


async def put_avatar(client: httpx.AsyncClient, who: dict[str, Any], data: bytes,
                     content_type: str = "image/png") -> httpx.Response:
    return await client.put(AVATAR, content=data, headers={**who["headers"], "Content-Type": content_type})


async def profile_avatar(client: httpx.AsyncClient, who: dict[str, Any]) -> Any:
    response = await client.get("/api/users/me", headers=who["headers"])
    assert response.status_code == 200, response.text
    return response.json()["avatar"]


async def listen(server: AppServer, who: dict[str, Any]) -> WsClient:
    ws = await WsClient.connect(server.base_url, who["headers"]["Authorization"].split()[1])
    assert (await ws.request("subscribe", channel=f"user:{who['id']}"))["ok"]
    return ws


async def profile_event(ws: WsClient, timeout: float = 5.0) -> dict[str, Any]:
    """The next `profile` push on the member's own channel (other pushes are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        push = await ws.push("message", timeout=max(0.1, deadline - time.monotonic()))
        if push["channel"].startswith("user:") and push["data"].get("type") == "profile":
            return dict(push["data"])


@pytest.fixture
def media(tmp_path: Path) -> Path:
    return tmp_path / "media"


@pytest.fixture
async def server(backend: dict[str, Any], media: Path) -> AsyncIterator[AppServer]:
    async with AppServer(make_settings(**backend, MEDIA_DIR=str(media), MINECRAFT_AVATAR_URL="")) as app:
        yield app


async def test_upload_is_served_immutable_then_replaced_and_deleted(server: AppServer, media: Path) -> None:
    png, jpeg = image_bytes((200, 30, 30)), image_bytes((30, 30, 200), "JPEG", (90, 160))
    first, second = key_of(png), key_of(jpeg)
    async with server.client() as client:
        alice = (await people(client, "alice"))["alice"]
        ws = await listen(server, alice)  # another tab of alice's
        try:
            response = await put_avatar(client, alice, png)
            assert response.status_code == 200, response.text
            assert response.json() == {"avatar": uploaded_avatar(first)}
            assert response.headers["RateLimit-Limit"] == "10"  # the upload's own limit, not the write class
            assert await profile_event(ws) == {"type": "profile", "avatar": uploaded_avatar(first)}
            assert await profile_avatar(client, alice) == uploaded_avatar(first)
            assert stored(media) == files_of(first)

            for url, size in ((uploaded_avatar(first)["large"], 256), (uploaded_avatar(first)["small"], 64)):
                served = await client.get(url)  # no credentials: avatars are public
                assert served.status_code == 200
                assert served.headers["content-type"] == "image/webp"
                assert served.headers["cache-control"] == IMMUTABLE
                assert served.headers["etag"] == f'"{first}-{size}"'
                assert served.headers["x-content-type-options"] == "nosniff"
                image = Image.open(io.BytesIO(served.content))
                assert (image.format, image.size) == ("WEBP", (size, size))
                assert not image.getexif()
                again = await client.get(url, headers={"If-None-Match": served.headers["etag"]})
                assert again.status_code == 304 and again.headers["cache-control"] == IMMUTABLE
                head = await client.head(url)
                assert head.status_code == 200 and head.content == b""

            # Replacing: new key, the old files are gone (nobody else uses them).
            response = await put_avatar(client, alice, jpeg, "image/jpeg")
            assert response.json() == {"avatar": uploaded_avatar(second)}
            assert (await profile_event(ws))["avatar"] == uploaded_avatar(second)
            assert stored(media) == files_of(second)
            assert (await client.get(uploaded_avatar(first)["large"])).status_code == 404

            # The same picture again keeps its own files.
            response = await put_avatar(client, alice, jpeg, "image/jpeg")
            assert response.json() == {"avatar": uploaded_avatar(second)}
            assert (await profile_event(ws))["avatar"] == uploaded_avatar(second)
            assert stored(media) == files_of(second)

            # Deleting: back to initials (no Minecraft account, no template), files removed.
            assert (await client.delete(AVATAR, headers=alice["headers"])).status_code == 204
            assert await profile_event(ws) == {"type": "profile", "avatar": None}
            assert await profile_avatar(client, alice) is None
            assert stored(media) == []
            assert (await client.get(uploaded_avatar(second)["small"])).status_code == 404
            assert (await client.delete(AVATAR, headers=alice["headers"])).status_code == 204  # idempotent
        finally:
            await ws.close()


async def test_shared_pictures_stay_until_their_last_member_moves_on(server: AppServer, media: Path) -> None:
    shared, own, other = image_bytes((10, 120, 10)), image_bytes((250, 200, 0)), image_bytes((0, 90, 90))
    async with server.client() as client:
        u = await people(client, "alice", "bob", "carol")
        alice, bob, carol = u["alice"], u["bob"], u["carol"]
        for who in (alice, bob):
            assert (await put_avatar(client, who, shared)).status_code == 200
        assert (await put_avatar(client, carol, own)).status_code == 200
        assert stored(media) == sorted(files_of(key_of(shared)) + files_of(key_of(own)))

        # alice leaves the shared picture: bob still shows it, carol is untouched.
        assert (await client.delete(AVATAR, headers=alice["headers"])).status_code == 204
        assert (await client.get(uploaded_avatar(key_of(shared))["large"])).status_code == 200
        assert await profile_avatar(client, bob) == uploaded_avatar(key_of(shared))
        assert await profile_avatar(client, carol) == uploaded_avatar(key_of(own))
        seen_by_alice = (await client.get("/api/users/bob", headers=alice["headers"])).json()
        assert seen_by_alice["avatar"] == uploaded_avatar(key_of(shared))

        # bob replaces it: now nobody uses it and its files go.
        assert (await put_avatar(client, bob, other)).status_code == 200
        assert stored(media) == sorted(files_of(key_of(other)) + files_of(key_of(own)))
        assert await profile_avatar(client, carol) == uploaded_avatar(key_of(own))


async def test_signed_out_callers_and_cookie_callers_without_csrf_are_refused(
        server: AppServer, media: Path) -> None:
    png = image_bytes((1, 2, 3))
    async with server.client() as client:
        for method in ("PUT", "DELETE"):
            response = await client.request(method, AVATAR, content=png, headers={"Content-Type": "image/png"})
            assert response.status_code == 401, (method, response.text)
            assert response.json()["error"]["code"] == "unauthorized"

        await register(client, "cookie_cat")
        signed_in = await client.post("/api/auth/login", json={
            "login": "cookie_cat", "password": PASSWORD, "mode": "cookie"})
        assert signed_in.status_code == 200, signed_in.text
        csrf = {"X-CSRF-Token": str(client.cookies.get("vonix_csrf"))}
        forged = await client.put(AVATAR, content=png, headers={"Content-Type": "image/png"})
        assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_failed"
        assert stored(media) == []
        response = await client.put(AVATAR, content=png, headers={"Content-Type": "image/png", **csrf})
        assert response.status_code == 200, response.text
        forged = await client.delete(AVATAR)
        assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_failed"
        assert stored(media) == files_of(key_of(png))
        assert (await client.delete(AVATAR, headers=csrf)).status_code == 204
        assert stored(media) == []


async def test_uploads_that_are_not_avatars_get_field_errors(server: AppServer, media: Path) -> None:
    gif = image_bytes((9, 9, 9), "GIF")
    png = image_bytes((40, 80, 160))
    cases = [
        (b"just some text, renamed to avatar.png\n", "image/png", "unsupported_image"),
        (gif, "image/gif", "unsupported_image"),
        (gif, "image/png", "unsupported_image"),  # the declared type changes nothing
        (image_bytes((9, 9, 9), "BMP"), "image/bmp", "unsupported_image"),
        (noise_png(96)[:9000], "image/png", "corrupt_image"),
        (b"", "image/png", "empty_image"),
    ]
    async with server.client() as client:
        alice = (await people(client, "alice"))["alice"]
        assert (await put_avatar(client, alice, png)).status_code == 200
        for data, content_type, code in cases:
            response = await put_avatar(client, alice, data, content_type)
            assert response.status_code == 422, (code, response.text)
            error = response.json()["error"]
            assert error["code"] == "validation_failed" and error["request_id"] == response.headers["x-request-id"]
            assert field_errors(response) == [("avatar", code)]
            assert error["details"][0]["message"]
        # Nothing changed: the earlier avatar and only its files.
        assert await profile_avatar(client, alice) == uploaded_avatar(key_of(png))
        assert stored(media) == files_of(key_of(png))


async def test_the_avatar_route_takes_two_mib_and_every_other_route_keeps_one(
        server: AppServer, media: Path) -> None:
    big = noise_png(724)  # a real picture of about 1.5 MiB: over MAX_BODY_BYTES, under AVATAR_MAX_BYTES
    assert 1.4 * MIB < len(big) < 2 * MIB
    too_big = b"\x89PNG\r\n\x1a\n" + b"\0" * (2 * MIB + 1 - 8)

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(too_big), 65536):
            yield too_big[start:start + 65536]

    async with server.client() as client:
        alice = (await people(client, "alice"))["alice"]
        declared = await put_avatar(client, alice, too_big)
        chunked = await client.put(AVATAR, content=streamed(),
                                   headers={**alice["headers"], "Content-Type": "image/png"})
        for response in (declared, chunked):
            assert response.status_code == 413, response.text
            assert response.json()["error"]["code"] == "payload_too_large"
            assert field_errors(response) == [("avatar", "too_large")]
        assert stored(media) == []

        response = await put_avatar(client, alice, big)
        assert response.status_code == 200, response.text
        assert response.json() == {"avatar": uploaded_avatar(key_of(big))}

        # The allowance is the avatar route's alone.
        bio = await client.patch("/api/users/me", headers=alice["headers"], json={"bio": "x" * int(1.5 * MIB)})
        assert bio.status_code == 413 and bio.json()["error"]["code"] == "payload_too_large"


async def test_only_avatar_file_names_are_served(server: AppServer, media: Path, tmp_path: Path) -> None:
    png = image_bytes((70, 70, 70))
    key = key_of(png)
    (tmp_path / "secret.txt").write_text("not for you")
    async with server.client() as client:
        alice = (await people(client, "alice"))["alice"]
        assert (await put_avatar(client, alice, png)).status_code == 200
        (media / "avatars" / ".upload-half.tmp").write_bytes(b"partial")
        (media / "avatars" / f"{key}-64.webp.bak").write_bytes(b"old")
        for name in (f"{key}-128.webp", f"{key.upper()}-64.webp", f"{key}-64.png", f"{key}-64.webp.bak",
                     f"{key[:-1]}-64.webp", ".upload-half.tmp", "..%2F..%2Fsecret.txt", "..%2Fsecret.txt",
                     "%2E%2E%2Fsecret.txt", f"{'0' * 64}-256.webp"):
            response = await client.get(f"/media/avatars/{name}")
            assert response.status_code == 404, name
            assert "not for you" not in response.text and response.headers.get("cache-control") != IMMUTABLE
        assert (await client.get(f"/media/avatars/{key}-64.webp")).status_code == 200


async def test_uploads_are_rate_limited_per_member(backend: dict[str, Any], media: Path) -> None:
    settings = make_settings(**backend, MEDIA_DIR=str(media), RATE_LIMIT_ROUTES=f"PUT {AVATAR}=2/60")
    async with AppServer(settings) as server, server.client() as client:
        u = await people(client, "alice", "bob")
        codes = [(await put_avatar(client, u["alice"], image_bytes((n, n, n)))).status_code for n in (1, 2, 3)]
        assert codes == [200, 200, 429]
        refused = await put_avatar(client, u["alice"], image_bytes((4, 4, 4)))
        assert refused.json()["error"]["code"] == "rate_limited" and int(refused.headers["Retry-After"]) > 0
        assert (await put_avatar(client, u["bob"], image_bytes((5, 5, 5)))).status_code == 200  # per member
        assert (await client.delete(AVATAR, headers=u["alice"]["headers"])).status_code == 204  # deleting is not


async def test_the_minecraft_head_is_the_fallback_when_a_template_is_set(
        backend: dict[str, Any], media: Path) -> None:
    stand_in = f"http://127.0.0.1:{free_port()}/head"  # a local stand-in: only the URLs are checked
    template = stand_in + "/{uuid}/{size}"
    settings = make_settings(**backend, MEDIA_DIR=str(media), MINECRAFT_AVATAR_URL=template)
    uuid = "069a79f4-44e9-4726-a5be-fca90e38aaf5"
    head = {"small": f"{stand_in}/{uuid}/64", "large": f"{stand_in}/{uuid}/256"}
    async with AppServer(settings) as server, server.client() as client:
        u = await people(client, "alice", "bob")
        alice, bob = u["alice"], u["bob"]
        assert await profile_avatar(client, alice) is None  # no linked account: initials
        db = server.resources.db
        await user_queries.update(db, alice["id"], minecraft_uuid=uuid, minecraft_username="Notch")
        row = await user_queries.by_id(db, alice["id"])
        assert avatar_urls(template, row) == head
        assert await profile_avatar(client, alice) == head
        ws = await listen(server, alice)
        try:
            png = image_bytes((5, 6, 7))
            assert (await put_avatar(client, alice, png)).json()["avatar"] == uploaded_avatar(key_of(png))
            assert (await profile_event(ws))["avatar"] == uploaded_avatar(key_of(png))
            assert (await client.get("/api/users/alice", headers=bob["headers"])).json()["avatar"] == \
                uploaded_avatar(key_of(png))
            assert (await client.delete(AVATAR, headers=alice["headers"])).status_code == 204
            assert (await profile_event(ws))["avatar"] == head  # the head again, not initials
            assert await profile_avatar(client, alice) == head
        finally:
            await ws.close()
