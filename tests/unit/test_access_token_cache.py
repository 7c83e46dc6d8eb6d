"""The verified-access-token cache: a reconnect skips the signature check, never the rules."""

from __future__ import annotations

import pytest

from server.auth import tokens
from server.auth.keys import Keyring
from server.auth.tokens import InvalidToken, TokenSigner
from server.settings import Settings


def signer(**kwargs: int) -> TokenSigner:
    settings = Settings(secret_key="k" * 40)  # type: ignore[arg-type]
    return TokenSigner(Keyring.from_settings(settings), 900, **kwargs)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every full verification (signature and claims) the signer runs."""
    seen: list[str] = []
    real = TokenSigner._decode

    def counting(self: TokenSigner, token: str, purpose: str) -> dict[str, object]:
        seen.append(token)
        return real(self, token, purpose)

    monkeypatch.setattr(TokenSigner, "_decode", counting)
    return seen


def test_a_token_verified_once_is_not_checked_again(decodes: list[str]) -> None:
    s = signer()
    token, _ = s.issue_access(7, "sess", "member")
    first = s.verify_access(token)
    assert s.verify_access(token) == first
    assert first.user_id == 7 and first.session_id == "sess"
    assert decodes == [token]


def test_a_cached_token_expires_on_time(monkeypatch: pytest.MonkeyPatch, decodes: list[str]) -> None:
    s = signer()
    token, expires = s.issue_access(7, "sess", "member", ttl=60)
    s.verify_access(token)
    monkeypatch.setattr(tokens.time, "time", lambda: float(expires))  # joserfc: expired once now >= exp
    with pytest.raises(InvalidToken):
        s.verify_access(token)
    with pytest.raises(InvalidToken):  # and dropped: the full check refuses it too
        s.verify_access(token)
    assert len(decodes) == 2


def test_a_tampered_token_is_refused_after_the_real_one_was_cached() -> None:
    s = signer()
    token, _ = s.issue_access(7, "sess", "member")
    s.verify_access(token)
    head, body, sig = token.split(".")
    forged = ".".join([head, body, sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")])
    with pytest.raises(InvalidToken):
        s.verify_access(forged)
    other = signer().issue_access(7, "sess", "member")[0]  # same claims, another process's tokens
    assert s.verify_access(other).user_id == 7  # same secret: valid (and now cached on its own)


def test_a_token_of_another_key_is_refused_even_with_the_same_claims() -> None:
    s = signer()
    stranger = TokenSigner(Keyring.from_settings(Settings(secret_key="x" * 40)), 900)  # type: ignore[arg-type]
    token, _ = stranger.issue_access(7, "sess", "member")
    stranger.verify_access(token)
    with pytest.raises(InvalidToken):
        s.verify_access(token)


def test_the_cache_is_bounded_and_drops_the_least_recently_used(decodes: list[str]) -> None:
    s = signer(verified_cache=2)
    a, b, c = (s.issue_access(i, f"s{i}", "member")[0] for i in range(3))
    s.verify_access(a)
    s.verify_access(b)
    s.verify_access(a)  # a is now the most recent
    s.verify_access(c)  # drops b
    assert len(s._verified) == 2
    decodes.clear()
    s.verify_access(a)
    s.verify_access(c)
    assert decodes == []
    s.verify_access(b)
    assert decodes == [b]


def test_a_ticket_is_never_accepted_as_an_access_token() -> None:
    s = signer()
    ticket = s.issue_ticket("mfa", "7", 60)
    with pytest.raises(InvalidToken):
        s.verify_access(ticket)
