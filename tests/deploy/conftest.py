"""Fixtures of the deployment checks: two real Vonix replicas as separate processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
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


# Package scope: the replicas stop when the deployment checks are done, not at the end of the run.
@pytest.fixture(scope="package")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, redis_service: RedisServer
) -> Iterator[list[Replica]]:
    """`vonix serve` twice, the way the image runs it, each with its own VONIX_INSTANCE_ID.

    Each has its own SQLite copy (already migrated) and both share the test Redis, so /metrics
    exposes the Redis families too. `python -m server.cli` with PYTHONPATH: the working tree's
    code, whatever the virtualenv's editable install points at.
    """
    directory = tmp_path_factory.mktemp("replicas")
    started: list[Replica] = []
    with processes() as running:
        for index in (1, 2):
            name = f"replica-{index}"
            database = directory / f"{name}.db"
            shutil.copyfile(sqlite_template, database)
            replica = Replica(name, free_port())
            env = clean_environment(
                PYTHONPATH=str(ROOT),
                VONIX_ENV="test",
                VONIX_INSTANCE_ID=name,
                DATABASE_URL=f"sqlite:///{database}",
                REDIS_URL=redis_service.url,
                LOG_FORMAT="json",
            )
            log = directory / f"{name}.log"
            with log.open("w") as output:
                # cwd is the temp dir: the app must not read a developer's ./.env.
                running.append(subprocess.Popen(
                    [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1",
                     "--port", str(replica.port)],
                    cwd=directory, env=env, stdout=output, stderr=subprocess.STDOUT,
                    start_new_session=True,
                ))
            started.append(replica)
        for replica, process in zip(started, running, strict=True):
            wait_http(f"{replica.url}/api/health", process, directory / f"{replica.name}.log")
        yield started


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which chart renderer the run used (acceptance: the test names its renderer)."""
    for renderer in sorted(RENDERERS_USED):
        terminalreporter.write_line(
            f"deploy: Helm chart rendered with {renderer}; manifests validated with "
            f"kubernetes-validate against Kubernetes {KUBERNETES_VERSION} (strict)"
        )
