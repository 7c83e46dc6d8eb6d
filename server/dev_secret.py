"""The development SECRET_KEY, kept in `.vonix-secret` in the working directory.

Without SECRET_KEY a development server used to make a new random key at every start, and the key
encrypts 2FA secrets and keys recovery codes and tokens: after a restart (`make run` again) every
2FA enrolment and session stopped working. Development now keeps one generated key in a
git-ignored file, readable only by its owner (mode 600), so restarts keep working. Production never
gets here (it refuses to start without SECRET_KEY) and tests keep a random in-memory key, so
neither writes a key file.

The file is created atomically: the key is written to a private temporary file that is then
hard-linked into place, so two servers starting at once agree on one key and nobody reads a
half-written file.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

FILENAME = ".vonix-secret"
MIN_LENGTH = 32


class DevSecretError(Exception):
    """The key file exists but cannot be used; the message says what to do."""


def _read(path: Path) -> str:
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < MIN_LENGTH:
        raise DevSecretError(f"{path} does not hold a key ({MIN_LENGTH}+ characters); delete it to "
                             "make a new one (2FA secrets made with the old key stop working) or set SECRET_KEY")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(0o600)  # a key others can read is not a secret: tighten what an editor or copy loosened
    return key


def _create(path: Path) -> str:
    key = secrets.token_urlsafe(48)  # 64 characters
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # fails if another process created the file first
        except FileExistsError:
            return _read(path)
    finally:
        temporary.unlink(missing_ok=True)
    return key


def load_or_create(directory: Path | None = None) -> str:
    """The key in `<directory>/.vonix-secret` (default: the working directory), made on first use."""
    path = (directory or Path.cwd()) / FILENAME
    try:
        return _read(path)
    except FileNotFoundError:
        return _create(path)
