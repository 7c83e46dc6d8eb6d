"""Units of notifications and web push: mention parsing, push message encoding, VAPID keys."""

from __future__ import annotations

import pytest

from server.notifications.events import MessageStored
from server.notifications.service import mentioned_names
from server.push import vapid
from server.push.sender import PushMessage


def test_mentions_are_found_once_each_and_not_inside_words_or_emails() -> None:
    text = "@Alice hi @bob, mail bob@example.com or @@carol; @al (too short) @dave_99! @ALICE"
    assert mentioned_names(text) == ["alice", "bob", "dave_99"]
    assert mentioned_names("") == []
    assert len(mentioned_names(" ".join(f"@user{i:03d}" for i in range(50)))) == 20  # capped


def test_message_event_reads_text_and_reply_to_defensively() -> None:
    def event(data: object) -> MessageStored:
        return MessageStored("room:general", 1, "room", 3, 1, "alice", "user", data)

    assert event({"text": "hi", "reply_to": 2}).reply_to == 2
    assert event({"text": 5, "reply_to": True}).text == "" and event({"reply_to": True}).reply_to is None
    assert event({"reply_to": -1}).reply_to is None and event("plain").text == ""


def test_push_message_payload_and_topic() -> None:
    message = PushMessage(title="t", body="b", url="/rooms/general#m3", tag="room:general", kind="mention",
                          notification_id=9, urgency="high")
    assert message.payload() == ('{"title":"t","body":"b","url":"/rooms/general#m3","tag":"room:general",'
                                 '"kind":"mention","id":9}')
    topic = message.topic()
    assert len(topic) == 32 and topic.replace("-", "").replace("_", "").isalnum()
    other = PushMessage(title="t", body="b", url="/", tag="dm:1:2", kind="dm")
    assert other.topic() != topic


def test_vapid_keys_round_trip_raw_and_pem() -> None:
    from cryptography.hazmat.primitives import serialization

    public, private = vapid.generate()
    key = vapid.load_private(private)
    assert vapid.public_key_of(key) == public and len(vapid.b64url_decode(public)) == 65
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    assert vapid.public_key_of(vapid.load_private(pem)) == public
    for bad in ("short", vapid.b64url(b"x" * 31), "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"):
        with pytest.raises(vapid.InvalidVapidKey):
            vapid.load_private(bad)
