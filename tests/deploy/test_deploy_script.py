"""scripts/deploy.sh with a controlled PATH: stand-in helm and kubectl scripts that only record
their arguments, so no test can reach a real cluster whatever this machine has installed."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import ROOT

SCRIPT = ROOT / "scripts" / "deploy.sh"
EXIT_USAGE, EXIT_PREREQUISITE = 64, 69


class Machine:
    """A bin directory with the basics deploy.sh uses, plus optional helm/kubectl stand-ins."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.calls = root / "calls.log"
        for name in ("sed", "dirname"):
            found = shutil.which(name)
            assert found
            (self.bin / name).symlink_to(found)

    def stub(self, name: str, body: str = "") -> None:
        path = self.bin / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.calls}"\n{body}\nexit 0\n')
        path.chmod(0o755)

    def with_tools(self, context: str | None = "prod-cluster") -> Machine:
        self.stub("helm")
        current = f'echo "{context}"' if context else 'echo "error: current-context is not set" >&2; exit 1'
        self.stub("kubectl", f'[ "$1 $2" = "config current-context" ] && {{ {current}; }}\n'
                             '[ "$1 $2" = "config get-contexts" ] && [ "$3" != "known" ] && exit 1')
        return self

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": str(self.bin), "HOME": str(self.bin.parent),
               "KUBECONFIG": str(self.bin.parent / "no-kubeconfig")}
        return subprocess.run(["/bin/bash", str(SCRIPT), *args], env=env, cwd=self.bin.parent,
                              capture_output=True, text=True, timeout=30)

    def recorded(self) -> list[list[str]]:
        if not self.calls.exists():
            return []
        return [shlex.split(line) for line in self.calls.read_text().splitlines()]


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def expected_upgrade(version: str, context: str | None = "prod-cluster") -> list[str]:
    command = ["helm", "upgrade", "--install", "vonix", str(ROOT / "charts" / "vonix"),
               "--namespace", "vonix", "--create-namespace"]
    if context:
        command += ["--kube-context", context]
    return [*command, "--values", str(ROOT / "charts" / "vonix" / "values-production.yaml"),
            "--set-string", f"image.tag={version}", "--atomic", "--wait", "--timeout", "10m"]


def test_dry_run_prints_the_helm_command_and_runs_nothing(machine: Machine) -> None:
    result = machine.with_tools().run("--dry-run", "v1.0.0")
    assert result.returncode == 0, result.stderr
    assert shlex.split(result.stdout) == expected_upgrade("v1.0.0")
    # Only the read-only context lookup ran; helm itself was not called.
    assert machine.recorded() == [["kubectl", "config", "current-context"]]


def test_dry_run_without_tools_still_prints_but_names_what_is_missing(machine: Machine) -> None:
    result = machine.run("--dry-run", "v1.0.0")
    assert result.returncode == 0
    assert shlex.split(result.stdout) == expected_upgrade("v1.0.0", context=None)
    assert "helm is not installed" in result.stderr
    assert "kubectl is not installed" in result.stderr
    assert "a real run would stop here" in result.stderr


def test_missing_helm_refuses_to_run(machine: Machine) -> None:
    machine.with_tools()
    (machine.bin / "helm").unlink()
    result = machine.run("v1.0.0")
    assert result.returncode == EXIT_PREREQUISITE
    assert "helm is not installed" in result.stderr and "refusing to run" in result.stderr
    assert all(call[0] != "helm" for call in machine.recorded())


def test_missing_kube_context_refuses_to_run(machine: Machine) -> None:
    result = machine.with_tools(context=None).run("v1.0.0")
    assert result.returncode == EXIT_PREREQUISITE
    assert "no kube context is selected" in result.stderr
    assert all(call[0] != "helm" for call in machine.recorded())


def test_unknown_context_refuses_to_run(machine: Machine) -> None:
    result = machine.with_tools().run("--context", "nowhere", "v1.0.0")
    assert result.returncode == EXIT_PREREQUISITE
    assert "kube context 'nowhere' does not exist" in result.stderr


def test_real_run_calls_helm_with_the_printed_command(machine: Machine) -> None:
    machine.with_tools()
    printed = machine.run("--dry-run", "--context", "known", "v2.3.4").stdout
    machine.calls.unlink()
    result = machine.run("--context", "known", "v2.3.4")
    assert result.returncode == 0, result.stderr
    assert machine.recorded()[-1] == shlex.split(printed)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status"], [["helm", "status", "vonix", "--namespace", "vonix", "--kube-context", "prod-cluster"],
                      ["kubectl", "get", "deployment,pods,hpa,pdb", "--namespace", "vonix", "--context",
                       "prod-cluster", "--selector", "app.kubernetes.io/instance=vonix"]]),
        (["logs"], [["kubectl", "logs", "--namespace", "vonix", "--context", "prod-cluster", "--selector",
                     "app.kubernetes.io/instance=vonix,app.kubernetes.io/component=app", "--prefix",
                     "--tail", "200", "--max-log-requests", "20"]]),
        (["rollback"], [["helm", "rollback", "vonix", "--namespace", "vonix", "--kube-context",
                         "prod-cluster", "--wait", "--timeout", "10m"]]),
        (["--namespace", "staging", "rollback", "3"],
         [["helm", "rollback", "vonix", "3", "--namespace", "staging", "--kube-context", "prod-cluster",
           "--wait", "--timeout", "10m"]]),
    ],
)
def test_operations(machine: Machine, args: list[str], expected: list[list[str]]) -> None:
    result = machine.with_tools().run("--dry-run", *args)
    assert result.returncode == 0, result.stderr
    assert [shlex.split(line) for line in result.stdout.splitlines()] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stauts"], "neither an action"),
        (["1.0"], "neither an action"),
        (["rollback", "last"], "REVISION must be a number"),
        (["--frobnicate", "v1.0.0"], "unknown option"),
        (["--values", "missing.yaml", "v1.0.0"], "values file missing.yaml not found"),
    ],
)
def test_usage_mistakes_are_refused_before_anything_runs(
    machine: Machine, args: list[str], message: str
) -> None:
    result = machine.with_tools().run(*args)
    assert result.returncode == EXIT_USAGE
    assert message in result.stderr
    assert machine.recorded() == []


def test_script_is_executable_and_documents_itself(machine: Machine) -> None:
    assert os.access(SCRIPT, os.X_OK)
    result = machine.run("--help")
    assert result.returncode == 0
    for word in ("VERSION", "status", "logs", "rollback", "--dry-run"):
        assert word in result.stdout
