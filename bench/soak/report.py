"""The soak's end: what the database and every client's log say, checked against each other, and
the one-screen report.

Delivery accounting, per client and channel (as bench_storm's load generator does): the expected
messages are every offset from the client's first subscribe reply's offset + 1 up to the channel's
last stored offset at the end. Each is seen exactly once (live or in a resubscribe's `missed`), or
it is lost, or it came more than once (a duplicate); an offset that came after a higher one is out
of order. Clients stay subscribed the whole run (they resubscribe after every reconnect), so
every member is judged on its whole range.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.soak.schedule import Event

TRANSPORT = ("connection_lost", "no_reply")  # what a client notes itself; not a server's error code


@dataclass
class Check:
    ok: bool
    text: str


@dataclass
class Analysis:
    published: int = 0
    acked: int = 0
    unacked: int = 0
    refused: int = 0
    refused_codes: Counter[str] = field(default_factory=Counter)
    stored: int = 0
    stored_soak: int = 0
    other_rows: int = 0
    offset_gaps: int = 0
    nonce_dups: int = 0
    text_dups: int = 0
    ack_mismatch: int = 0
    ack_missing: int = 0
    stored_not_acked: int = 0
    expected: int = 0
    seen: int = 0
    lost: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    foreign: int = 0
    never_subscribed: int = 0
    via_missed: int = 0
    epoch_changes: int = 0
    lost_samples: list[Any] = field(default_factory=list)
    lost_channels: set[str] = field(default_factory=set)
    dup_samples: list[Any] = field(default_factory=list)
    outages: list[tuple[float, int | None, float | None, bool, int]] = field(default_factory=list)
    not_recovered: int = 0
    sub_errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: list[tuple[float, str, bool, str]] = field(default_factory=list)  # (t, code, temporary, nonce)
    acked_nonces: set[str] = field(default_factory=set)
    connect_errors: Counter[str] = field(default_factory=Counter)


def analyse(logs: list[dict[str, Any]], rows: list[tuple[str, int, int | None, str | None, str | None]],
            last: dict[str, int], user_ids: dict[str, int], published: int) -> Analysis:
    a = Analysis(published=published)
    _stored(a, rows, last)
    by_key = {(channel, offset): (author, nonce, text) for channel, offset, author, nonce, text in rows}
    stored_nonces = {nonce for _, _, _, nonce, _ in rows if nonce and nonce.startswith("soak-")}
    unacked: set[str] = set()
    for log in logs:
        uid = user_ids[log["user"]]
        _acks(a, log, uid, by_key)
        unacked.update(entry[1] for entry in log["unacked"])
        a.refused += len(log["refused"])
        a.refused_codes.update(str(entry[3]) for entry in log["refused"])
        for channel in log["channels"]:
            _deliveries(a, log, channel, last.get(channel, 0))
        a.via_missed += log["missed"]
        a.epoch_changes += log["epoch_changes"]
        for started, code, back, _attempts, recovered in log["outages"]:
            a.outages.append((started, code, back, recovered, log["index"]))
            a.not_recovered += 0 if recovered else 1
        a.sub_errors.update(f"{e[2]}{' (temporary)' if e[3] else ''}" for e in log["sub_errors"])
        a.connect_errors.update(log["connect_errors"])
    a.unacked = len(unacked)
    a.stored_not_acked = len(stored_nonces - a.acked_nonces)
    return a


def _stored(a: Analysis, rows: list[tuple[str, int, int | None, str | None, str | None]],
            last: dict[str, int]) -> None:
    a.stored = len(rows)
    offsets: dict[str, set[int]] = {}
    nonces: Counter[tuple[int | None, str]] = Counter()
    texts: Counter[str] = Counter()
    for channel, offset, author, nonce, text in rows:
        offsets.setdefault(channel, set()).add(offset)
        if nonce and nonce.startswith("soak-"):
            a.stored_soak += 1
            nonces[(author, nonce)] += 1
            if text:
                texts[text] += 1
        else:
            a.other_rows += 1
    for channel, top in last.items():
        a.offset_gaps += top - len(offsets.get(channel, set()) & set(range(1, top + 1)))
    a.nonce_dups = sum(n - 1 for n in nonces.values())
    a.text_dups = sum(n - 1 for n in texts.values())


def _acks(a: Analysis, log: dict[str, Any], uid: int,
          by_key: dict[tuple[str, int], tuple[int | None, str | None, str | None]]) -> None:
    for channel, nonce, offset, _epoch, started, acked_at, _attempts, errors in log["acks"]:
        a.acked += 1
        a.acked_nonces.add(nonce)
        a.latencies.append(acked_at - started)
        row = by_key.get((channel, offset))
        if row is None:
            a.ack_missing += 1
        elif row[0] != uid or row[1] != nonce or row[2] != f"soak {nonce}":
            a.ack_mismatch += 1
        a.errors.extend((t, code, temporary, nonce) for t, code, temporary in errors)
    for _channel, nonce, _started, _attempts, errors in log["unacked"]:
        a.errors.extend((t, code, temporary, nonce) for t, code, temporary in errors)


def _deliveries(a: Analysis, log: dict[str, Any], channel: str, top: int) -> None:
    if channel not in log["first"]:
        a.never_subscribed += 1
        return
    first = log["first"][channel]
    got = log["got"].get(channel, [])
    expected = max(0, top - first)
    a.expected += expected
    seen: set[int] = set()
    highest = first
    for offset in got:
        if offset <= first or offset > top:
            a.foreign += 1
            continue
        if offset in seen:
            a.duplicates += 1
            if len(a.dup_samples) < 5:
                a.dup_samples.append([log["user"], channel, offset])
            continue
        if offset < highest:
            a.out_of_order += 1
        seen.add(offset)
        highest = max(highest, offset)
    a.seen += len(seen)
    missing = expected - len(seen)
    a.lost += missing
    if missing:
        a.lost_channels.add(channel)
    if missing and len(a.lost_samples) < 5:
        gone = sorted(set(range(first + 1, top + 1)) - seen)
        a.lost_samples.append([log["user"], channel, len(gone), gone[:5]])


# --- the report -------------------------------------------------------------------------------

def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _codes(counter: Counter[Any]) -> str:
    return ", ".join(f"{code}: {n:,}" for code, n in counter.most_common(4)) or "none"


def event_effects(a: Analysis, events: list[Event], end: float, t0: float) -> list[str]:
    """One line per event: what the clients saw between it and the next event."""
    lines = []
    for i, event in enumerate(events):
        until = events[i + 1].started if i + 1 < len(events) else end
        outages = [o for o in a.outages if event.started <= o[0] < until]
        times = [o[2] - o[0] for o in outages if o[2] is not None]
        codes = Counter(str(o[1]) for o in outages)
        errors = [e for e in a.errors if event.started <= e[0] < until]
        refused = Counter(e[1] for e in errors if e[1] not in TRANSPORT)
        retried = len({e[3] for e in errors})
        effect = (f"{len(outages):,} reconnects ({_codes(codes)}), max back {max(times, default=0):.1f} s; "
                  f"{retried:,} publishes retried" + (f" ({_codes(refused)})" if refused else ""))
        lines.append(f"  {event.started - t0:6.1f}  {event.name:<23} "
                     f"{_detail(event)}")
        lines.append(f"          -> {effect}")
    return lines


def _detail(event: Event) -> str:
    d = event.detail
    if event.error:
        return f"FAILED: {event.error}"
    if event.name.startswith("kill"):
        return f"restarted after {d['down_s']:.0f} s (took {event.ended - event.started:.1f} s)"
    if event.name.startswith("Redis"):
        promoted = d.get("promoted_s")
        return (f"master :{d['master_port']} ({d['rooms']} rooms), replica promoted in "
                f"{'-' if promoted is None else f'{promoted:.1f}'} s, rejoined as {d['role_after']} "
                f"at {d['rejoined_s']:.1f} s")
    if event.name.startswith("PostgreSQL"):
        return f"down {d['down_s']:.1f} s"
    if event.name.startswith("SIGTERM"):
        return f"drained and exited in {d['exit_s']:.1f} s, restarted"
    return ""


def pg_refusals(a: Analysis, event: Event | None, grace: float = 10.0) -> tuple[int, int, int]:
    """Publishes refused with a temporary server code during the PostgreSQL outage (+ grace):
    how many, how many of them were acknowledged later (same nonce), how many waited unanswered."""
    if event is None:
        return 0, 0, 0
    window = [e for e in a.errors if event.started <= e[0] <= event.ended + grace]
    refused = {e[3] for e in window if e[1] not in TRANSPORT and e[2]}
    unanswered = {e[3] for e in window if e[1] == "no_reply"}
    return len(refused), len(refused & a.acked_nonces), len(unanswered)
