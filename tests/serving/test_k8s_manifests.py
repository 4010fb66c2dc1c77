"""``modelyard deploy apply --target k8s`` (issue 12): manifests written from a
live registry and validated offline.

- Deployment, Service, HorizontalPodAutoscaler: against Kubernetes 1.37's
  OpenAPI schemas in strict mode (``kubernetes-validate``, schemas shipped in
  the package).
- ServiceMonitor, PrometheusRule: *structurally*. No installable package
  ships the Prometheus Operator CRD schemas without side effects here (the
  one that does registers a pytest plugin that breaks collection), so
  :data:`CRD_SHAPES` below states the fields these manifests use, as the
  operator's ``monitoring.coreos.com/v1`` API reference defines them: types,
  required fields, duration patterns, and no field the API lacks.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.client import Registry
from modelyard.serving.manifests import K8sTarget, dns_label, render

K8S_VERSION = "1.37"
IMAGE = "registry.local/fraud@sha256:" + "ab" * 32
DURATION = {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}


def _closed(required: list[str], **props: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": props,
        "additionalProperties": False,
    }


METADATA = _closed(
    ["name"],
    name={"type": "string"},
    namespace={"type": "string"},
    labels=STRINGS,
    annotations=STRINGS,
)
CRD_SHAPES: dict[str, dict[str, Any]] = {
    "ServiceMonitor": _closed(
        ["apiVersion", "kind", "metadata", "spec"],
        apiVersion={"const": "monitoring.coreos.com/v1"},
        kind={"const": "ServiceMonitor"},
        metadata=METADATA,
        spec=_closed(
            ["selector", "endpoints"],
            selector=_closed([], matchLabels=STRINGS),
            endpoints={
                "type": "array",
                "minItems": 1,
                "items": _closed(
                    [],
                    port={"type": "string"},
                    path={"type": "string", "pattern": "^/"},
                    interval=DURATION,
                    scrapeTimeout=DURATION,
                ),
            },
        ),
    ),
    "PrometheusRule": _closed(
        ["apiVersion", "kind", "metadata", "spec"],
        apiVersion={"const": "monitoring.coreos.com/v1"},
        kind={"const": "PrometheusRule"},
        metadata=METADATA,
        spec=_closed(
            [],
            groups={
                "type": "array",
                "items": _closed(
                    ["name", "rules"],
                    name={"type": "string", "minLength": 1},
                    interval=DURATION,
                    rules={
                        "type": "array",
                        "items": _closed(
                            ["expr"],
                            alert={"type": "string"},
                            record={"type": "string"},
                            expr={"type": "string", "minLength": 1},
                            labels=STRINGS,
                            annotations=STRINGS,
                            **{"for": DURATION},
                        ),
                    },
                ),
            },
        ),
    ),
}


def validate(doc: dict[str, Any]) -> None:
    """Raise unless ``doc`` is valid for its kind (see the module docstring)."""
    shape = CRD_SHAPES.get(doc["kind"])
    if shape is None:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    else:
        jsonschema.Draft202012Validator(shape).validate(doc)


def _cli(registry: str, tmp_path: Path, *args: str) -> Any:
    env = {"MODELYARD_URL": registry, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "COLUMNS": "200"}
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture(scope="module")
def model(live_server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("k8s-model")
    name = f"Fraud_Model.{uuid.uuid4().hex[:6]}"  # not a DNS label as it is
    (work / "m.onnx").write_bytes(b"graph")
    with Registry(live_server, cache_dir=work / "sdk") as reg:
        reg.push(name, [work / "m.onnx"], format="onnx")
        reg.set_alias(f"{name}/1", "production")
    return name


def test_manifests_validate_and_fit_together(live_server: str, model: str, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    r = _cli(
        live_server,
        tmp_path,
        "deploy",
        "apply",
        f"{model}@production",
        "--env",
        "prod-eu",
        "--target",
        "k8s",
        "--out",
        str(out),
        "--image",
        IMAGE,
        "--registry-url",
        "http://modelyard.registry.svc:8080",
        "--k8s-namespace",
        "models",
        "--replicas",
        "2",
        "--max-replicas",
        "6",
        "--json",
    )
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    docs = {Path(p).name: yaml.safe_load(Path(p).read_text()) for p in answer["files"]}
    assert set(docs) == {
        "deployment.yaml",
        "service.yaml",
        "hpa.yaml",
        "servicemonitor.yaml",
        "prometheusrule.yaml",
    }
    for doc in docs.values():
        validate(doc)

    dep, svc, hpa = docs["deployment.yaml"], docs["service.yaml"], docs["hpa.yaml"]
    mon, rule = docs["servicemonitor.yaml"], docs["prometheusrule.yaml"]
    name = dep["metadata"]["name"]
    assert name == dns_label(f"modelyard-{model}-prod-eu") and len(name) <= 63
    assert {d["metadata"]["namespace"] for d in docs.values()} == {"models"}
    pod = dep["spec"]["template"]
    [c] = pod["spec"]["containers"]
    # The model server, following the reference, reporting as a replica.
    assert c["image"] == IMAGE
    assert c["args"][:3] == [f"default/{model}@production", "--env", "prod-eu"]
    assert c["args"][c["args"].index("--replica") + 1] == "$(POD_NAME)"
    endpoint = c["args"][c["args"].index("--endpoint") + 1]
    assert endpoint == f"http://{name}.models.svc:8000"
    env = {e["name"]: e for e in c["env"]}
    assert env["MODELYARD_URL"]["value"] == "http://modelyard.registry.svc:8080"
    assert env["MODELYARD_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "token"
    # Probes on the OIP health routes, through the named port.
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert [p["name"] for p in c["ports"]] == ["http"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    # The pieces point at each other.
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert svc["spec"]["selector"] == selector
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert dep["spec"]["replicas"] == 2
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert mon["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert mon["spec"]["endpoints"][0]["path"] == "/metrics"
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert set(alerts) == {"ModelyardHighLatency", "ModelyardHighErrorRate", "ModelyardInputDrift"}
    assert all(f'job="{name}"' in a["expr"] for a in alerts.values())
    assert "> 0.25" in alerts["ModelyardHighLatency"]["expr"]
    # The deployment is recorded: desired replicas, the Service's URL.
    d = answer["deployment"]
    assert (d["environment"], d["reference"], d["replicas"], d["endpoint"]) == (
        "prod-eu",
        f"default/{model}@production",
        2,
        endpoint,
    )
    with Registry(live_server) as reg:
        assert reg.deployment("prod-eu", f"{model}@production")["status"] == "pending"


def test_the_validation_can_fail() -> None:
    """Each kind's check refuses a broken manifest (the test above can fail)."""
    docs = render(
        K8sTarget(
            reference="default/m@production",
            model="m",
            environment="prod",
            image=IMAGE,
            registry_url="http://r:8080",
        )
    )
    broken = copy.deepcopy(docs["deployment.yaml"])
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
    extra = copy.deepcopy(docs["service.yaml"])
    extra["spec"]["clusterIPx"] = "None"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(extra)
    monitor = copy.deepcopy(docs["servicemonitor.yaml"])
    monitor["spec"]["endpoints"][0]["interval"] = "soon"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)
    rule = copy.deepcopy(docs["prometheusrule.yaml"])
    rule["spec"]["groups"][0]["rules"][0]["severity"] = "high"  # not a rule field
    with pytest.raises(jsonschema.ValidationError):
        validate(rule)


def test_apply_k8s_refusals(live_server: str, model: str, tmp_path: Path) -> None:
    base = ["deploy", "apply", f"{model}@production", "--env", "prod-eu", "--target", "k8s"]
    r = _cli(live_server, tmp_path, *base, "--image", IMAGE)
    assert r.exit_code == 2 and "--out" in r.output, r.output
    r = _cli(
        live_server,
        tmp_path,
        *base,
        "--out",
        str(tmp_path / "a"),
        "--image",
        IMAGE,
        "--k8s-namespace",
        "Not_A_Label",
    )
    assert r.exit_code == 1 and "INVALID_INPUT" in r.output, r.output
    r = _cli(
        live_server,
        tmp_path,
        *base,
        "--out",
        str(tmp_path / "b"),
        "--image",
        IMAGE,
        "--replicas",
        "9",
        "--max-replicas",
        "3",
    )
    assert r.exit_code == 1 and "max-replicas" in r.output, r.output
    r = _cli(
        live_server,
        tmp_path,
        "deploy",
        "apply",
        "ghost@production",
        "--env",
        "prod-eu",
        "--target",
        "k8s",
        "--out",
        str(tmp_path / "c"),
        "--image",
        IMAGE,
    )
    assert r.exit_code == 1 and "MODEL_NOT_FOUND" in r.output, r.output
    assert not (tmp_path / "c").exists()
    r = _cli(live_server, tmp_path, *base[:4], "bad env", "--target", "k8s")
    assert r.exit_code == 1 and "INVALID_ENVIRONMENT" in r.output, r.output


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("modelyard-fraud-prod", "modelyard-fraud-prod"),
        ("modelyard-Fraud_1-prod", None),
        ("x" * 80, None),
    ],
)
def test_dns_labels(value: str, expected: str | None) -> None:
    got = dns_label(value)
    assert len(got) <= 63 and got == got.lower() and not got.startswith("-")
    if expected is not None:
        assert got == expected
    else:
        assert got != value and dns_label(value) == got  # stable
        assert dns_label(value + "y") != got
