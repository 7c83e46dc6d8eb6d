"""docs/deployment.md covers the setups the issue asks for and the documented compose path."""

from __future__ import annotations

import re

from tests.deploy.support import ROOT

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
