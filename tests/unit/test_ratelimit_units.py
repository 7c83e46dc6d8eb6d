"""Rate limit algorithms, rules, analytics and the client-IP rule, with a fake clock."""

from __future__ import annotations

import pytest

from server.errors import RateLimited
from server.ratelimit.analytics import LocalAnalytics, summarize
from server.ratelimit.backend import MemoryCounts
from server.ratelimit.client_ip import TrustedProxies, client_ip
from server.ratelimit.limiter import RateLimiter
from server.ratelimit.memory import Decision, MemoryLimiter
from server.ratelimit.rules import InvalidLimit, Rule, parse_actions, parse_limit, parse_routes


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_sliding_window_allows_the_limit_then_refuses_with_retry() -> None:
    clock = Clock(1000.0)  # the start of a 10 s window
    limiter = MemoryLimiter(clock)
    rule = Rule("api", 5, 10)
    decisions = [limiter.hit(rule, "ip:1") for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[5]
    assert refused.retry_after == pytest.approx(10 + 10 * (1 - 4 / 5))  # next window, then decay to 4
    assert refused.headers()["Retry-After"] == "12"
    assert limiter.hit(rule, "ip:2").allowed, "keys are independent"
    clock.now += 10  # next window: the previous 5 weigh fully at its start
    assert not limiter.hit(rule, "ip:1").allowed
    clock.now += 2.1  # 21% into it: 5 * 0.79 = 3.95 used, one fits
    assert limiter.hit(rule, "ip:1").allowed
    assert not limiter.hit(rule, "ip:1").allowed
    clock.now += 30  # idle for long: a fresh start
    assert limiter.hit(rule, "ip:1").remaining == 4


def test_sliding_window_retry_after_is_when_a_request_fits_again() -> None:
    clock = Clock(960.0)  # the start of a 60 s window
    limiter = MemoryLimiter(clock)
    rule = Rule("api", 10, 60)
    for _ in range(10):
        limiter.hit(rule, "k")
    clock.now += 61  # next window; 10 weighing 59/60
    refused = limiter.hit(rule, "k")
    assert not refused.allowed
    clock.now += refused.retry_after + 0.01
    assert limiter.hit(rule, "k").allowed


def test_token_bucket_burst_then_refill_rate() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    rule = parse_limit("bucket", "5/1+10")  # 5 per second, bursts of 10
    assert rule is not None and rule.algorithm == "token_bucket" and rule.capacity == 10
    burst = [limiter.hit(rule, "c") for _ in range(11)]
    assert [d.allowed for d in burst] == [True] * 10 + [False]
    assert burst[10].retry_after == pytest.approx(0.2)
    allowed = 0
    for _ in range(30):  # 3 seconds in steps of 0.1 s, asking 3 times a step
        clock.now += 0.1
        allowed += sum(limiter.hit(rule, "c").allowed for _ in range(3))
    assert allowed == 15  # exactly the refill rate
    clock.now += 100
    full = limiter.hit(rule, "c")
    assert full.remaining == 9 and full.reset == pytest.approx(0.2)


def test_memory_limiter_forgets_the_oldest_keys_first() -> None:
    limiter = MemoryLimiter(Clock(), max_keys=3)
    rule = Rule("r", 1, 60)
    for key in ("a", "b", "c", "d"):
        limiter.hit(rule, key)
    assert len(limiter) == 3
    assert limiter.hit(rule, "a").allowed  # forgotten
    assert not limiter.hit(rule, "d").allowed


def test_headers() -> None:
    allowed = Decision(True, 100, 99, 12.2)
    assert allowed.headers() == {"RateLimit-Limit": "100", "RateLimit-Remaining": "99", "RateLimit-Reset": "13"}
    refused = Decision(False, 100, 0, 0.3, 0.3)
    assert refused.headers()["Retry-After"] == "1" and refused.headers()["RateLimit-Reset"] == "1"


def test_parsing_rules() -> None:
    assert parse_limit("api", "100/900") == Rule("api", 100, 900.0)
    assert parse_limit("api", "off") is None
    assert parse_limit("x", " 5 / 1.5 + 3 ") == Rule("x", 5, 1.5, 3)
    for bad in ("", "100", "100/0", "0/10", "a/b", "5/1+0", "-1/10"):
        with pytest.raises(InvalidLimit):
            parse_limit("api", bad)
    assert parse_actions("post=10/60, reaction=off") == {"post": Rule("action:post", 10, 60.0), "reaction": None}
    with pytest.raises(InvalidLimit):
        parse_actions("Bad Name=1/1")
    routes = parse_routes("POST /api/auth/register=5/3600,/api/rooms=off")
    assert routes == {("POST", "/api/auth/register"): Rule("route:POST /api/auth/register", 5, 3600.0),
                      (None, "/api/rooms"): None}
    for bad in ("FETCH /x=1/1", "api/x=1/1", "/x"):
        with pytest.raises(InvalidLimit):
            parse_routes(bad)


def test_analytics_keep_an_hour_and_bound_the_keys() -> None:
    clock = Clock(0.0)
    analytics = LocalAnalytics(clock, max_keys=10)
    for n in range(30):
        analytics.record("api", f"ip:{n}", allowed=False)
    analytics.record("api", "ip:0", allowed=False)
    analytics.record("api", "ip:0", allowed=True)
    counts, limited = analytics.snapshot()
    assert counts["api|limited"] == 31 and counts["api|allowed"] == 1
    assert len(limited) <= 10 and limited["api|ip:0"] == 2
    report = summarize(counts, limited, top=3)
    assert report["counts"] == {"api": {"allowed": 1, "limited": 31}}
    assert report["top_limited"][0] == {"rule": "api", "key": "ip:0", "count": 2}
    clock.now += 3601
    assert analytics.snapshot() == ({}, {})


async def test_limit_action_raises_429_with_headers() -> None:
    limiter = RateLimiter(MemoryCounts(MemoryLimiter(Clock())), actions=parse_actions("friend_request=2/3600"))
    assert await limiter.limit_action(7, "reaction") is None, "actions without a rule pass"
    await limiter.limit_action(7, "friend_request")
    await limiter.limit_action(7, "friend_request")
    with pytest.raises(RateLimited) as refused:
        await limiter.limit_action(7, "friend_request")
    assert refused.value.status == 429 and int(refused.value.headers["Retry-After"]) > 0
    await limiter.limit_action(8, "friend_request")  # per user
    report = await limiter.report()
    assert report["counts"]["action:friend_request"] == {"allowed": 3, "limited": 1}
    assert report["top_limited"] == [{"rule": "action:friend_request", "key": "user:7", "count": 1}]


def scope(peer: str, forwarded: str | None = None) -> dict[str, object]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return {"type": "http", "client": (peer, 5000), "headers": headers}


def test_client_ip_believes_forwarded_headers_only_from_trusted_proxies() -> None:
    trusted = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "::1"])
    assert client_ip(scope("203.0.113.9", "1.2.3.4"), trusted) == "203.0.113.9", "untrusted peer: header ignored"
    assert client_ip(scope("127.0.0.1", "198.51.100.7"), trusted) == "198.51.100.7"
    # the client forged a left part; the rightmost untrusted hop is the one our proxy saw
    assert client_ip(scope("10.1.1.1", "1.1.1.1, 198.51.100.7, 10.2.2.2"), trusted) == "198.51.100.7"
    assert client_ip(scope("127.0.0.1", "10.0.0.5, 10.0.0.6"), trusted) == "10.0.0.5", "all trusted: leftmost"
    assert client_ip(scope("127.0.0.1", "garbage"), trusted) == "127.0.0.1"
    assert client_ip(scope("127.0.0.1"), trusted) == "127.0.0.1"
    assert client_ip(scope("::1", "2001:db8::1"), trusted) == "2001:db8::1"
    assert client_ip(scope("8.8.8.8", "1.2.3.4"), TrustedProxies(["*"])) == "1.2.3.4"
    assert client_ip(scope("127.0.0.1", "1.2.3.4"), TrustedProxies([])) == "127.0.0.1"
