"""Fixtures of the deployment checks: two real Vonix replicas as separate processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.support import (
    KUBERNETES_VERSION,
    RENDERERS_USED,
    ROOT,
    Replica,
    clean_environment,
    processes,
    wait_http,
)
from tests.support.services import RedisServer, free_port

# Both replicas sign and check tokens with the same key, as every replica of a deployment does.
SHARED_SECRET_KEY = "deploy-test-secret-key-0123456789-abcdefghijklmnop"


@dataclass(frozen=True)
class Deployment:
    """What the replicas share: one SQLite file (migrated by `vonix migrate`), Redis, the key."""

    directory: Path
    database_url: str
    redis_url: str

    def environment(self, **extra: str) -> dict[str, str]:
        # PYTHONPATH: the working tree's code, whatever the virtualenv's editable install points at.
        return clean_environment(
            PYTHONPATH=str(ROOT),
            VONIX_ENV="test",
            SECRET_KEY=SHARED_SECRET_KEY,
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            LOG_FORMAT="json",
            **extra,
        )

    def vonix(self, *arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`vonix ARGUMENTS` (the console script's `server.cli:main`) against the shared database.

        cwd is the temp dir: the app must not read a developer's ./.env.
        """
        result = subprocess.run([sys.executable, "-m", "server.cli", *arguments], cwd=self.directory,
                                env=self.environment(), capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"vonix {' '.join(arguments)}: {result.stdout}{result.stderr}"
        return result


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory, redis_service: RedisServer) -> Deployment:
    directory = tmp_path_factory.mktemp("replicas")
    shared = Deployment(directory, f"sqlite:///{directory / 'vonix.db'}", redis_service.url)
    status = shared.vonix("migrate", "up")
    assert "at head" in status.stdout, status.stdout
    return shared


@pytest.fixture(scope="package")
def bot_token(deployment: Deployment) -> str:
    """A bot's token from `vonix create-bot`, the way an operator gets one."""
    output = deployment.vonix("create-bot", "deploy_check_bot").stdout
    line = next(line for line in output.splitlines() if line.startswith("token (shown once"))
    token = line.split(": ", 1)[1].strip()
    assert token.startswith("vxb_"), line
    return token


# Package scope: the replicas stop when the deployment checks are done, not at the end of the run.
@pytest.fixture(scope="package")
def replicas(deployment: Deployment) -> Iterator[list[Replica]]:
    """`vonix serve` twice, the way the image runs it, each with its own VONIX_INSTANCE_ID.

    Both use the one SQLite file `vonix migrate` prepared (they do not migrate themselves, like
    the compose stack and the chart) and share the test Redis, so /metrics exposes the Redis
    families too and the realtime layer works across them.
    """
    started: list[Replica] = []
    with processes() as running:
        for index in (1, 2):
            name = f"replica-{index}"
            replica = Replica(name, free_port(), deployment.directory / f"{name}.log")
            env = deployment.environment(VONIX_INSTANCE_ID=name, MIGRATE_ON_START="false")
            with replica.log.open("w") as output:
                running.append(subprocess.Popen(
                    [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1",
                     "--port", str(replica.port)],
                    cwd=deployment.directory, env=env, stdout=output, stderr=subprocess.STDOUT,
                    start_new_session=True,
                ))
            started.append(replica)
        for replica, process in zip(started, running, strict=True):
            wait_http(f"{replica.url}/api/ready", process, replica.log)
        yield started


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which chart renderer the run used (acceptance: the test names its renderer)."""
    for renderer in sorted(RENDERERS_USED):
        terminalreporter.write_line(
            f"deploy: Helm chart rendered with {renderer}; manifests validated with "
            f"kubernetes-validate against Kubernetes {KUBERNETES_VERSION} (strict)"
        )
