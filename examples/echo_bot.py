"""Echo bot: answers `!echo <text>` in a room, using the Vonix bot client (realtime/client.py).

    vonix create-bot echo_bot            # prints the token once
    VONIX_URL=http://127.0.0.1:8000 VONIX_BOT_TOKEN=vxb_... python examples/echo_bot.py

Environment: VONIX_URL (default http://127.0.0.1:8000), VONIX_BOT_TOKEN (required), VONIX_CHANNEL
(default room:general), VONIX_BACKOFF ("base,cap" seconds, default "0.5,30").

Behaviour: for every message whose `data.text` starts with "!echo " it publishes
`{"text": <the rest>, "reply_to": <offset of the command>}` on the same channel, with the nonce
`echo-<epoch>-<offset>`: a command seen twice (a recovery overlapping what was already answered, or
a retried publish) is answered once, because the server keeps the first message for a repeated
nonce. Nonces are unique per author across channels, so the epoch (which names the channel's
history) is part of it. The bot ignores its own messages and messages without a sender. When the
connection drops it reconnects by itself and answers what was posted meanwhile (recovery with
`since`); if the server cannot fill the gap it says so in its log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from realtime.client import (
    Connected,
    Disconnected,
    Gap,
    Message,
    SubscriptionLost,
    VonixClient,
    VonixError,
)

COMMAND = "!echo "


def say(text: str) -> None:
    print(f"echo_bot: {text}", flush=True)


def command_text(message: Message) -> str | None:
    data = message.data
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return None
    text: str = data["text"]
    return text[len(COMMAND):] if text.startswith(COMMAND) else None


async def answer(client: VonixClient, message: Message, text: str) -> None:
    nonce = f"echo-{message.epoch}-{message.offset}"[:64]
    for _ in range(5):
        try:
            offset = await client.publish(message.channel, {"text": text, "reply_to": message.offset}, nonce=nonce)
        except VonixError as exc:
            if not exc.temporary:
                say(f"cannot answer #{message.offset}: {exc}")
                return
            await asyncio.sleep(exc.retry_after or 1.0)
            continue
        how = " (recovered)" if message.recovered else ""
        say(f"answered #{message.offset}{how} with #{offset}")
        return
    say(f"gave up answering #{message.offset}")


async def run(url: str, token: str, channel: str, backoff: tuple[float, float]) -> None:
    async with VonixClient(url, token, backoff=backoff) as client:
        await client.subscribe(channel)
        say(f"subscribed to {channel}")
        async for event in client:
            if isinstance(event, Message):
                me = (client.user or {}).get("id")
                if event.sender is None or event.sender.get("id") == me:
                    continue
                text = command_text(event)
                if text is not None:
                    await answer(client, event, text)
            elif isinstance(event, Connected):
                say(f"connected as {event.user.get('username')} (connection {client.connections})")
            elif isinstance(event, Disconnected):
                say(f"disconnected: {event.code} {event.reason}; reconnecting in {event.retry_in} s")
            elif isinstance(event, Gap):
                say(f"gap in {event.channel}: messages after #{event.since} up to #{event.offset} may be missing")
            elif isinstance(event, SubscriptionLost):
                say(f"lost {event.channel}: {event.error}")


def main() -> int:
    token = os.environ.get("VONIX_BOT_TOKEN")
    if not token:
        print("echo_bot: set VONIX_BOT_TOKEN (vonix create-bot NAME prints one)", file=sys.stderr)
        return 2
    url = os.environ.get("VONIX_URL", "http://127.0.0.1:8000")
    channel = os.environ.get("VONIX_CHANNEL", "room:general")
    base, cap = (float(x) for x in os.environ.get("VONIX_BACKOFF", "0.5,30").split(","))

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await run(url, token, channel, (base, cap))
        except asyncio.CancelledError:
            say("stopped")
            return 0
        except VonixError as exc:
            say(f"stopped: {exc}")
            return 1
        return 0

    return asyncio.run(guarded())


if __name__ == "__main__":
    sys.exit(main())
