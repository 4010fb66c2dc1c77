"""The deployment files stay valid and true: the Kubernetes manifests under
``deploy/k8s`` validate (strict: no unknown field) against the Kubernetes
schemas that ``kubernetes-validate`` ships, offline; every setting they and
the systemd files set is a real one and parses; the probes, ports and
commands name what the server and the CLI have; and the migration Job's
command really migrates an empty PostgreSQL database to head."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.settings import Settings
from modelyard.store.metadata import migrate
from modelyard.store.metadata.engine import create_engine
from tests.pgcluster import fresh_database

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SYSTEMD = ROOT / "deploy" / "systemd"
KUBERNETES = "1.33"
"""The Kubernetes release the manifests are checked against."""


def resources() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [r for r in resources() if r["kind"] == kind]


def settings_from(env: dict[str, str]) -> Settings:
    """Settings as a process with exactly this environment would read them."""
    keys = {f"MODELYARD_{name.upper()}": name for name in Settings.model_fields}
    unknown = [k for k in env if k.startswith("MODELYARD_") and k not in keys]
    assert unknown == []
    with pytest.MonkeyPatch.context() as mp:
        for key in keys:
            mp.delenv(key, raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        return Settings()


def test_every_manifest_validates_strictly_offline() -> None:
    docs = resources()
    assert {d["kind"] for d in docs} >= {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "Job",
        "CronJob",
    }
    for doc in docs:
        assert kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_a_broken_manifest_is_refused() -> None:
    [deployment] = by_kind("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["pathh"] = "/health/ready"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_settings_are_real_and_parse() -> None:
    [config] = by_kind("ConfigMap")
    [secret] = by_kind("Secret")
    env = {**config["data"], **secret["stringData"]}
    settings = settings_from(env)
    assert settings.db is not None and settings.db.startswith("postgresql://")
    assert settings.blob_store_url().startswith("s3://")
    assert settings.auto_migrate is False and settings.auth_enabled()
    assert settings.host == "0.0.0.0"

    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string((SYSTEMD / "modelyard.service").read_text())
    assert unit["Service"]["EnvironmentFile"] == "/etc/modelyard/modelyard.env"
    assert shlex.split(unit["Service"]["ExecStart"])[1:] == ["server"]
    assert shlex.split(unit["Service"]["ExecStartPre"])[1:] == ["db", "upgrade"]
    lines = (SYSTEMD / "modelyard.env").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    commented = [line[1:].split("=", 1) for line in lines if line.startswith("#MODELYARD_")]
    settings_from(dict(pairs))
    settings_from(dict(pairs + commented))


def test_probes_ports_and_commands_name_what_exists() -> None:
    [deployment] = by_kind("Deployment")
    [service] = by_kind("Service")
    [config] = by_kind("ConfigMap")
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    [port] = container["ports"]
    assert port["containerPort"] == int(config["data"]["MODELYARD_PORT"])
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
    # Every container runs a modelyard command this CLI has.
    runner = CliRunner()
    for resource in resources():
        spec = resource.get("spec", {})
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get(
            "template"
        )
        if not template:
            continue
        for c in template["spec"]["containers"]:
            assert c["args"][0] == "modelyard"
            result = runner.invoke(app, [*c["args"][1:], "--help"])
            assert result.exit_code == 0, (c["args"], result.output)


@pytest.mark.postgres
def test_the_migration_job_migrates_an_empty_database(pg_url: str, tmp_path: Path) -> None:
    [job] = by_kind("Job")
    [container] = job["spec"]["template"]["spec"]["containers"]
    with fresh_database(pg_url) as db:
        env = {"MODELYARD_DB": db, "MODELYARD_DATA_DIR": str(tmp_path)}
        result = CliRunner().invoke(app, container["args"][1:], env=env)
        assert result.exit_code == 0, result.output
        assert f"database at revision {migrate.SCHEMA_HEAD} (was empty)" in result.output
        engine = create_engine(db)
        try:
            assert migrate.is_up_to_date(engine)
        finally:
            engine.dispose()
        # Re-running it (the next rollout) changes nothing.
        again = CliRunner().invoke(app, container["args"][1:], env=env)
        assert again.exit_code == 0 and f"(was {migrate.SCHEMA_HEAD})" in again.output
