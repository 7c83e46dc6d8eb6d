"""Message search (issue 16): 1,000,000 stored messages on PostgreSQL, one- and two-word queries.

The path users take: `GET /api/search?q=...` on a Vonix server (PostgreSQL full-text search,
permissions inside the query, ranked, highlighted, 20 a page), timed by the client, one query at
a time. The reference, in the same run on the same rows: the query a search box gets without a
full-text index, `body ILIKE '%word%'` with the same permission filter, newest 20 first, timed on
the database connection (so it pays no HTTP at all).

The messages: BENCH_SEARCH_MESSAGES (1,000,000) bodies of 4-16 words drawn from a Zipf-distributed
vocabulary (the 60 most frequent words are English stop words, as in real chat; 20,000 words in
all), spread over 20 public rooms and one private room the searcher is not in (a fifth of the
messages, so the permission filter has work to do), copied in with COPY. The GIN index is dropped
before the copy and built after it: its build time is reported. Queries sample content words by
their frequency (common words are searched more), skipping stop words. Knobs:
BENCH_SEARCH_MESSAGES, BENCH_SEARCH_QUERIES (200 per kind; the reference runs the first 20).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from bench import members
from bench.bench_fanout import Config, Stack, preflight, progress, start_vonix, vonix_env
from bench.table import print_table, print_targets

STOP_WORDS = ("the a to and i you it is of in that for on be this was with are have my just so but not we "
              "at what do if me all can they get no like your one up out he about there go will or from "
              "now how an has had when them would then she him some").split()
VOCABULARY = 20_000
ROOMS = 20
TARGET_P95_MS = 100.0
PAGE = 20
REFERENCE_QUERIES = 20  # a scan of seconds each: the reference's p95 is clear long before 200


def words(rng: random.Random) -> list[str]:
    """Stop words first, then pronounceable made-up words, all distinct."""
    syllables = ["ka", "ro", "mi", "ne", "ta", "lu", "zo", "pi", "re", "do", "sa", "vi", "ge", "mo", "ba", "ti"]
    seen: set[str] = set(STOP_WORDS)
    vocab = list(STOP_WORDS)
    while len(vocab) < VOCABULARY:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            vocab.append(word)
    return vocab


async def load(database_url: str, count: int, searcher: str) -> dict[str, Any]:
    """Rooms, messages, then the GIN index; returns timings and the vocabulary's weights."""
    rng = random.Random(16)
    vocab = words(rng)
    weights = list(itertools.accumulate(1.0 / rank for rank in range(1, VOCABULARY + 1)))
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        owner = await connection.fetchval("SELECT id FROM users WHERE username = $1", searcher)
        other = await connection.fetchval(
            "INSERT INTO users (username, email, role, status, created_at, updated_at) "
            "VALUES ('outsider', 'outsider@example.com', 'member', 'active', now(), now()) RETURNING id")
        rooms = []
        for n in range(ROOMS + 1):
            kind = "room" if n < ROOMS else "private_room"
            rooms.append(await connection.fetchval(
                "INSERT INTO channels (name, kind, title, last_offset, created_at) VALUES ($1, $2, $1, 0, now()) "
                "RETURNING id", f"room:bench-{n:02d}", kind))
        await connection.execute("INSERT INTO channel_members (channel_id, user_id, role, last_read_offset, joined_at) "
                                 "VALUES ($1, $2, 'owner', 0, now())", rooms[-1], other)
        progress(f"search: generating {count:,} messages")
        start = datetime(2026, 1, 1, tzinfo=UTC)
        offsets = dict.fromkeys(rooms, 0)
        records = []
        samples = []  # bodies two-word queries are taken from: words that do occur together
        for i in range(count):
            channel = rooms[-1] if i % 5 == 0 else rooms[i % ROOMS]
            offsets[channel] += 1
            body = " ".join(rng.choices(vocab, cum_weights=weights, k=rng.randint(4, 16)))
            if i % 97 == 1:
                samples.append(body)
            records.append((channel, offsets[channel], owner if channel != rooms[-1] else other, body,
                            orjson.dumps({"text": body}).decode(), start + timedelta(seconds=i)))
        await connection.execute("DROP INDEX ix_messages_search")
        progress("search: copying them in (the tsvector column is computed on the way)")
        started = time.perf_counter()
        await connection.copy_records_to_table(
            "messages", records=records, columns=["channel_id", "offset", "author_id", "body", "data", "created_at"])
        copied = time.perf_counter() - started
        for channel, last in offsets.items():
            await connection.execute("UPDATE channels SET last_offset = $1 WHERE id = $2", last, channel)
        progress("search: building the GIN index")
        started = time.perf_counter()
        await connection.execute("CREATE INDEX ix_messages_search ON messages USING gin (search)")
        indexed = time.perf_counter() - started
        await connection.execute("VACUUM ANALYZE messages")
        size = await connection.fetchval("SELECT pg_relation_size('ix_messages_search')")
    finally:
        await connection.close()
    return {"vocab": vocab, "weights": weights, "copy_s": copied, "index_s": indexed, "index_bytes": size,
            "private": rooms[-1], "samples": samples}


def queries(loaded: dict[str, Any], per_kind: int) -> dict[str, list[str]]:
    """One word: a content word drawn by frequency. Two words: two content words of one stored
    message (people search for words they saw together)."""
    rng = random.Random(61)
    vocab, weights, stop = loaded["vocab"], loaded["weights"], set(STOP_WORDS)

    def word() -> str:
        while True:
            candidate = rng.choices(vocab, cum_weights=weights)[0]
            if candidate not in stop:
                return candidate

    def pair() -> str:
        while True:
            found = sorted({w for w in rng.choice(loaded["samples"]).split() if w not in stop})
            if len(found) >= 2:
                return " ".join(rng.sample(found, 2))

    return {"one word": [word() for _ in range(per_kind)], "two words": [pair() for _ in range(per_kind)]}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def through_api(url: str, token: str, asked: list[str]) -> tuple[list[float], list[int]]:
    times, found = [], []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        client.get("/api/search", params={"q": "warmup"})
        for q in asked:
            started = time.perf_counter()
            response = client.get("/api/search", params={"q": q, "limit": PAGE})
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            found.append(len(response.json()["messages"]))
    return times, found


async def reference(database_url: str, searcher_id: int, asked: list[str]) -> list[float]:
    """The same questions without a full-text index: ILIKE on every word, same permissions."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    times = []
    try:
        for q in asked:
            terms = q.split()
            where = " AND ".join(f"m.body ILIKE ${n + 2}" for n in range(len(terms)))
            sql = (f"SELECT m.id, m.body FROM messages m WHERE {where} AND m.channel_id IN ("
                   "SELECT c.id FROM channels c WHERE c.archived_at IS NULL AND (c.kind = 'room' OR c.id IN "
                   "(SELECT channel_id FROM channel_members WHERE user_id = $1))) ORDER BY m.id DESC LIMIT 20")
            started = time.perf_counter()
            await connection.fetch(sql, searcher_id, *(f"%{t}%" for t in terms))
            times.append((time.perf_counter() - started) * 1000)
    finally:
        await connection.close()
    return times


def main() -> int:
    count = int(os.environ.get("BENCH_SEARCH_MESSAGES") or 1_000_000)
    per_kind = int(os.environ.get("BENCH_SEARCH_QUERIES") or 200)
    preflight()
    stack = Stack(Config())
    try:
        database, _bot = stack.database(True)
        env = vonix_env(database, None)
        token = members.mint_members(env, "searcher", 1)[0]
        loaded = asyncio.run(load(database, count, "searcher00000"))
        asked = queries(loaded, per_kind)
        server = start_vonix(env, stack.dir)
        try:
            url = f"http://127.0.0.1:{server.port}"
            searcher_id = int(httpx.get(f"{url}/api/auth/me", headers={"Authorization": f"Bearer {token}"},
                                        timeout=10).json()["id"])
            results = {}
            for kind, qs in asked.items():
                progress(f"search: {len(qs)} {kind} queries through the API")
                api, found = through_api(url, token, qs)
                progress(f"search: {REFERENCE_QUERIES} of the {kind} queries with ILIKE (reference)")
                ref = asyncio.run(reference(database, searcher_id, qs[:REFERENCE_QUERIES]))
                results[kind] = (api, found, ref)
        finally:
            server.stop()
    finally:
        stack.cleanup()

    print(f"Loaded {count:,} messages: COPY {loaded['copy_s']:.1f} s (tsvector computed on the way), GIN index "
          f"build {loaded['index_s']:.1f} s, index size {loaded['index_bytes'] / 2**20:.0f} MiB\n")
    rows, targets = [], []
    for kind, (api, found, ref) in results.items():
        p95, ref_p95 = percentile(api, 0.95), percentile(ref, 0.95)
        rows.append([f"GET /api/search ({kind})", f"{statistics.median(api):.1f}", f"{p95:.1f}", f"{max(api):.1f}",
                     f"{statistics.mean(found):.1f}", f"{percentile(ref, 0.5):.1f}", f"{ref_p95:.1f}",
                     f"{ref_p95 / p95:.1f}x" if p95 else "-"])
        targets.append([f"{kind}: p95 search latency <= {TARGET_P95_MS:.0f} ms ({count:,} messages, PostgreSQL)",
                        f"{p95:.1f} ms", "met" if p95 <= TARGET_P95_MS else "MISSED"])
    print_table(f"Search: {count:,} messages on PostgreSQL; {per_kind} queries per kind, one at a time; "
                f"times in ms",
                ["path", "p50", "p95", "max", "results per page", "ILIKE p50 (reference)", "ILIKE p95",
                 "ILIKE p95 / ours"], rows)
    print("  ours: the whole request through the API (auth, permissions, ranking, highlights, JSON);\n"
          "  reference: the ILIKE query alone on the database connection, newest 20, same permissions\n")
    print_targets("Targets (issue 16, search)", targets, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
