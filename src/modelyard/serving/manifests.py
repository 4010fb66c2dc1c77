"""``modelyard deploy apply REF --env NAME --target k8s``: Kubernetes manifests
for a model server following one reference in one environment.

Written, one object per file (``kubectl apply -f DIR``)::

    deployment.yaml       the model servers: the image built by ``modelyard
                          build``, running ``modelyard serve REF --env NAME``
                          (heartbeats, alias following); readiness on
                          /v2/health/ready, liveness and start-up on
                          /v2/health/live; non-root, no privilege escalation
    service.yaml          ClusterIP on the OIP port
    hpa.yaml              HorizontalPodAutoscaler (autoscaling/v2) on CPU
    servicemonitor.yaml   Prometheus Operator: scrape /metrics
    prometheusrule.yaml   alerts: p99 latency, error rate, input drift (PSI)

The pods reach the registry at ``registry_url`` with the token in a Secret
the operator creates (``token_secret``, key ``token``; a consumer token is
enough). The cache directory stays writable (``readOnlyRootFilesystem`` is
off): the image carries the version it was built for in its cache, and a
followed alias pulls its next version there.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.domain.errors import InvalidInput
from modelyard.serving.buildctx import CACHE_DIR, CONTAINER_PORT, USER_ID

_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

# Prometheus series the alerts read: the model server's own (serving/metrics.py)
# and the drift gauge its monitor exports (modelyard_serving_drift_psi).
LATENCY_BUCKETS = "modelyard_serving_request_duration_seconds_bucket"
REQUESTS = "modelyard_serving_requests_total"
ERRORS = "modelyard_serving_errors_total"
DRIFT_PSI = "modelyard_serving_drift_psi"


@dataclass(frozen=True, slots=True)
class Alerts:
    """Alert thresholds of the PrometheusRule."""

    p99_latency_seconds: float = 0.25
    error_rate: float = 0.05
    drift_psi: float = 0.2


@dataclass(frozen=True, slots=True)
class K8sTarget:
    """What the manifests describe."""

    reference: str
    """Canonical reference the servers follow (``default/fraud@production``)."""
    model: str
    environment: str
    image: str
    registry_url: str
    namespace: str = "default"
    """The Kubernetes namespace (not a modelyard namespace)."""
    replicas: int = 1
    max_replicas: int = 4
    token_secret: str = "modelyard-serving-token"
    cpu: str = "1"
    memory: str = "512Mi"
    alerts: Alerts = Alerts()

    @property
    def name(self) -> str:
        """The objects' name: ``modelyard-MODEL-ENV`` as a DNS label."""
        return dns_label(f"modelyard-{self.model}-{self.environment}")

    @property
    def endpoint(self) -> str:
        """The Service's in-cluster URL (recorded on the deployment)."""
        return f"http://{self.name}.{self.namespace}.svc:{CONTAINER_PORT}"


def dns_label(value: str) -> str:
    """``value`` as a Kubernetes name (RFC 1123 label, at most 63 characters).

    Characters a label cannot hold become ``-``; when anything had to change
    or be cut, a short hash of the original keeps two names that map to the
    same spelling apart.
    """
    clean = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    if clean == value and len(clean) <= 63:
        return clean
    suffix = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{clean[: 63 - 9].rstrip('-')}-{suffix}"


def check_k8s_namespace(value: str) -> str:
    """``value`` if it is a valid Kubernetes namespace name."""
    if not _DNS_LABEL.fullmatch(value):
        raise InvalidInput(
            f"invalid Kubernetes namespace {value!r} (an RFC 1123 label)",
            code="INVALID_INPUT",
            details={"field": "namespace"},
        )
    return value


def _labels(t: K8sTarget) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "modelyard-server",
        "app.kubernetes.io/instance": t.name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "modelyard",
    }


def _selector(t: K8sTarget) -> dict[str, str]:
    return {"app.kubernetes.io/instance": t.name}


def _meta(t: K8sTarget) -> dict[str, Any]:
    return {
        "name": t.name,
        "namespace": t.namespace,
        "labels": _labels(t),
        "annotations": {
            "modelyard.io/reference": t.reference,
            "modelyard.io/environment": t.environment,
        },
    }


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def deployment(t: K8sTarget) -> dict[str, Any]:
    """The Deployment of the model servers."""
    container = {
        "name": "model-server",
        "image": t.image,
        "imagePullPolicy": "IfNotPresent",
        # The image's entrypoint is ``modelyard serve``; these replace its
        # pinned command: follow the reference and report as a replica.
        "args": [
            t.reference,
            "--env",
            t.environment,
            "--host",
            "0.0.0.0",
            "--port",
            str(CONTAINER_PORT),
            "--cache-dir",
            CACHE_DIR,
            "--replica",
            "$(POD_NAME)",
            "--endpoint",
            t.endpoint,
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "MODELYARD_URL", "value": t.registry_url},
            {
                "name": "MODELYARD_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": t.token_secret, "key": "token"}},
            },
        ],
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "readinessProbe": _probe("/v2/health/ready", period=5, failures=3),
        "livenessProbe": _probe("/v2/health/live", period=10, failures=3),
        # The port opens only once every model is loaded: give a large one time.
        "startupProbe": _probe("/v2/health/live", period=5, failures=60),
        "resources": {
            "requests": {"cpu": t.cpu, "memory": t.memory},
            "limits": {"cpu": t.cpu, "memory": t.memory},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(t),
        "spec": {
            "replicas": t.replicas,
            "selector": {"matchLabels": _selector(t)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": _labels(t)},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": USER_ID,
                        "runAsGroup": USER_ID,
                        "fsGroup": USER_ID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                },
            },
        },
    }


def service(t: K8sTarget) -> dict[str, Any]:
    """The ClusterIP Service in front of the servers."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(t),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(t),
            "ports": [
                {"name": "http", "port": CONTAINER_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def autoscaler(t: K8sTarget) -> dict[str, Any]:
    """CPU-based autoscaling between the desired replicas and ``max_replicas``."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(t),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": t.name},
            "minReplicas": t.replicas,
            "maxReplicas": t.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def service_monitor(t: K8sTarget) -> dict[str, Any]:
    """Prometheus Operator's ServiceMonitor: scrape the servers' /metrics."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(t),
        "spec": {
            "selector": {"matchLabels": _selector(t)},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }


def prometheus_rule(t: K8sTarget) -> dict[str, Any]:
    """Alerts on p99 latency, error rate and input drift of these servers."""
    job = f'job="{t.name}"'
    a = t.alerts
    common = {"modelyard_environment": t.environment, "modelyard_reference": t.reference}
    rules = [
        {
            "alert": "ModelyardHighLatency",
            "expr": f"histogram_quantile(0.99, sum by (le, model) "
            f"(rate({LATENCY_BUCKETS}{{{job}}}[5m]))) > {a.p99_latency_seconds}",
            "for": "10m",
            "labels": {"severity": "warning", **common},
            "annotations": {
                "summary": f"p99 latency of {{{{ $labels.model }}}} in {t.environment} "
                f"over {a.p99_latency_seconds} s",
                "description": "p99 inference latency has been {{ $value }} s for 10 minutes.",
            },
        },
        {
            "alert": "ModelyardHighErrorRate",
            "expr": f"sum by (model) (rate({ERRORS}{{{job}}}[5m])) / "
            f"sum by (model) (rate({REQUESTS}{{{job}}}[5m])) > {a.error_rate}",
            "for": "5m",
            "labels": {"severity": "critical", **common},
            "annotations": {
                "summary": f"errors of {{{{ $labels.model }}}} in {t.environment} "
                f"over {a.error_rate:.0%} of requests",
                "description": "{{ $value | humanizePercentage }} of inference requests "
                "failed or were refused over 5 minutes.",
            },
        },
        {
            "alert": "ModelyardInputDrift",
            "expr": f"max by (model, version, feature) ({DRIFT_PSI}{{{job}}}) > {a.drift_psi}",
            "for": "15m",
            "labels": {"severity": "warning", **common},
            "annotations": {
                "summary": f"input drift on {{{{ $labels.model }}}} in {t.environment}",
                "description": "PSI of feature {{ $labels.feature }} against the version's "
                f"reference statistics is {{{{ $value }}}} (threshold {a.drift_psi}).",
            },
        },
    ]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(t),
        "spec": {"groups": [{"name": t.name, "rules": rules}]},
    }


MANIFESTS = (
    ("deployment.yaml", deployment),
    ("service.yaml", service),
    ("hpa.yaml", autoscaler),
    ("servicemonitor.yaml", service_monitor),
    ("prometheusrule.yaml", prometheus_rule),
)


def render(t: K8sTarget) -> dict[str, dict[str, Any]]:
    """Every manifest by file name."""
    if not 0 <= t.replicas <= t.max_replicas or t.max_replicas < 1:
        raise InvalidInput(
            "replicas must be from 0 to max-replicas, and max-replicas at least 1",
            code="INVALID_INPUT",
            details={"replicas": t.replicas, "max_replicas": t.max_replicas},
        )
    return {name: make(t) for name, make in MANIFESTS}


def write_manifests(t: K8sTarget, out: Path) -> list[Path]:
    """Write the manifests into ``out`` (empty or absent); the files written."""
    import yaml

    docs = render(t)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput(
            f"{out} exists and is not an empty directory",
            code="OUTPUT_NOT_EMPTY",
            details={"path": str(out)},
        )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in docs.items():
        path = out / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
        written.append(path)
    return written
