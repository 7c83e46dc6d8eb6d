"""docs/deployment.md covers the setups the issue asks for and the documented compose path."""

from __future__ import annotations

import re

import yaml

from tests.deploy.support import CHART, ROOT

DOC = (ROOT / "docs" / "deployment.md").read_text()


def test_deployment_guide_has_every_section() -> None:
    headings = set(re.findall(r"^##+ (.+)$", DOC, re.M))
    assert {"Single machine", "Docker Compose", "Kubernetes", "Scaling notes"} <= headings
    for topic in ("Redis sizing", "sharded pub/sub", "Connections per pod"):
        assert topic in DOC, topic


def test_documented_compose_path_is_the_one_in_the_compose_file() -> None:
    steps = ["docker compose up -d", "docker compose exec app vonix migrate"]
    header = (ROOT / "docker-compose.yml").read_text().split("\nname:", 1)[0]
    for step in steps:
        assert step in DOC and step in header, step


def test_guide_names_the_real_connection_metric_and_the_websocket_server_settings() -> None:
    metric = yaml.safe_load((CHART / "values.yaml").read_text())["autoscaling"]["connections"]["metricName"]
    assert f"`{metric}`" in DOC
    cli = (ROOT / "server" / "cli.py").read_text()
    # What the guide explains is what `vonix serve` configures.
    assert "ws_per_message_deflate=False" in cli and "per-message-deflate" in DOC
    from realtime.protocol import MAX_FRAME_BYTES

    assert "ws_max_size=1024 * 1024" in cli and "1 MiB" in DOC
    assert MAX_FRAME_BYTES == 64 * 1024 and "64 KiB" in DOC
    assert "(../README.md#configuration)" in DOC
