"""The artifact proxy and model sources against MLflow's CVE history (issue 10):
traversal in every spelling is refused with a 4xx in MLflow's error shape, a
canary file outside the data directory is never served, and a version's source
is resolved through the artifact index only (never the filesystem)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelyard.api.app import create_app
from modelyard.settings import Settings

API = "/api/2.0/mlflow"
PROXY = "/api/2.0/mlflow-artifacts/artifacts"
CANARY = b"modelyard-canary-7f3a"


@pytest.fixture
def door(tmp_path: Path, db_url: str) -> Iterator[tuple[TestClient, str, str]]:
    """An in-process app, a run and a logged model in the Default experiment."""
    (tmp_path / "canary.txt").write_bytes(CANARY)
    settings = Settings(data_dir=tmp_path / "data", db=db_url, dispatcher=False)
    with TestClient(create_app(settings)) as client:
        run = client.post(f"{API}/runs/create", json={"experiment_id": "0"}).json()["run"]
        model = client.post(
            f"{API}/logged-models", json={"experiment_id": "0", "name": "m"}
        ).json()["model"]
        yield client, run["info"]["run_id"], model["info"]["model_id"]


def _refused(r: object, *statuses: int) -> None:
    status = r.status_code  # type: ignore[attr-defined]
    assert status in (statuses or (400, 404)), r.text  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert set(body) == {"error_code", "message"}
    assert CANARY.decode() not in r.text  # type: ignore[attr-defined]


TRAVERSALS = [
    "../../canary.txt",
    "0/{run}/artifacts/../../../../canary.txt",
    "0/{run}/artifacts/%2e%2e/%2e%2e/canary.txt",
    "0/{run}/artifacts/%252e%252e/%252e%252e/canary.txt",
    "0/{run}/artifacts/..%2f..%2fcanary.txt",
    "0/{run}/artifacts/a\\..\\..\\canary.txt",
    "0/{run}/artifacts/a%5c..%5ccanary.txt",
    "0/{run}/artifacts/a%00b",
    "//proc/self/root/etc/passwd",
    "0/{run}/artifacts//etc/passwd",
    "0/{run}/artifacts/C:/x",
    "0/models/{model}/artifacts/../../{run}/artifacts/x",
    "http:///#/../../canary.txt",
    "0/{run}/x",
    "1/{run}/artifacts/x",  # another experiment's id in front of the run
]


def test_traversal_is_refused_everywhere(door: tuple[TestClient, str, str]) -> None:
    """The whole corpus on one app (an app per path would cost a database each)."""
    client, run, model = door
    for raw in TRAVERSALS:
        path = raw.format(run=run, model=model)
        _refused(client.put(f"{PROXY}/{path}", content=b"x"))
        _refused(client.get(f"{PROXY}/{path}"))
        _refused(client.get(PROXY, params={"path": path}))
        _refused(client.delete(f"{PROXY}/{path}"))


def test_upload_download_list_round_trip(door: tuple[TestClient, str, str]) -> None:
    client, run, model = door
    root = f"0/{run}/artifacts"
    assert client.put(f"{PROXY}/{root}/dir/a.bin", content=b"abc").status_code == 200
    assert client.put(f"{PROXY}/{root}/b.txt", content=b"hello").status_code == 200
    assert client.get(f"{PROXY}/{root}/dir/a.bin").content == b"abc"
    listed = client.get(PROXY, params={"path": root}).json()["files"]
    assert listed == [
        {"path": "b.txt", "is_dir": False, "file_size": 5},
        {"path": "dir", "is_dir": True},
    ]
    assert client.get(PROXY, params={"path": f"{root}/b.txt"}).json() == {"files": []}
    _refused(client.get(f"{PROXY}/{root}/missing"), 404)
    assert client.delete(f"{PROXY}/{root}/dir").status_code == 200
    _refused(client.get(f"{PROXY}/{root}/dir/a.bin"), 404)
    # A logged model's tree, and an unknown owner.
    assert (
        client.put(f"{PROXY}/0/models/{model}/artifacts/MLmodel", content=b"x").status_code == 200
    )
    _refused(client.put(f"{PROXY}/0/{'0' * 32}/artifacts/x", content=b"x"), 404)


FOREIGN_SOURCES = [
    "file:///etc/passwd",
    "/etc/passwd",
    "../../canary.txt",
    "http:///#/../../canary.txt",
    "//proc/self/root/etc/passwd",
    "s3://bucket/key",
    "models:/m-../../x",
    "models:/m-fraud/1",  # a registered model named "m-fraud": the registry's, not ours
]
TRAVERSING_SOURCES = [
    "runs:/{run}/../../canary.txt",
    "runs:/{run}/%2e%2e/x",
    "runs:/../../etc/passwd",
    "models:/{model}/../../x",
    "mlflow-artifacts:/0/{run}/artifacts/../../../canary.txt",
    "mlflow-artifacts:/0/{run}/artifacts/a\\b",
    "runs:/{run}/a%00b",
]


def test_sources(door: tuple[TestClient, str, str], tmp_path: Path) -> None:
    """A source that is not one of ours is never opened: kept as text, no
    files. One of ours that tries to leave its tree is refused."""
    from modelyard.composition import build_services
    from modelyard.domain.errors import InvalidInput
    from modelyard.domain.identity import Principal
    from modelyard.service.versions import VersionSpec

    client, run, model = door
    admin = Principal.local("admin")
    settings = Settings(
        data_dir=tmp_path / "data", db=str(client.app.state.settings.db), dispatcher=False
    )
    with build_services(settings) as services:
        reg = services.registry
        reg.create_model("canary", actor=admin)
        for source in FOREIGN_SOURCES:
            v = reg.create_version("canary", VersionSpec(source=source), actor=admin)
            assert v.files == [] and v.metadata["mlflow.source"] == source, source
        for source in TRAVERSING_SOURCES:
            with pytest.raises(InvalidInput):
                reg.create_version(
                    "canary", VersionSpec(source=source.format(run=run, model=model)), actor=admin
                )


def test_tracking_permissions_with_auth_on(tmp_path: Path, db_url: str) -> None:
    """Roles apply to tracking as on REST v1: a reader of ``default`` reads
    runs and artifacts, writes nothing; a writer of another namespace sees
    nothing of ``default``; a token as Basic password works like Bearer."""
    import base64

    from tests.auth_helpers import ADMIN_TOKEN, auth_settings, bearer, make_user

    with TestClient(create_app(auth_settings(tmp_path, db_url))) as client:
        admin = bearer(ADMIN_TOKEN)
        assert client.post(f"{API}/runs/create", json={}).status_code == 401
        run = client.post(f"{API}/runs/create", json={"experiment_id": "0"}, headers=admin)
        rid = run.json()["run"]["info"]["run_id"]
        path = f"{PROXY}/0/{rid}/artifacts/a.txt"
        assert client.put(path, content=b"hi", headers=admin).status_code == 200
        client.post("/api/v1/namespaces", json={"name": "other"}, headers=admin)
        reader = bearer(make_user(client, "rita", {"default": "reader"}))
        basic = base64.b64encode(b"rita:" + reader["Authorization"].split()[1].encode()).decode()
        outsider = bearer(make_user(client, "otto", {"other": "writer"}))
        for who in (reader, {"Authorization": f"Basic {basic}"}):
            assert client.get(f"{API}/runs/get", params={"run_id": rid}, headers=who).is_success
            assert client.get(path, headers=who).content == b"hi"
            _refused(client.put(path, content=b"x", headers=who), 403)
            _refused(
                client.post(
                    f"{API}/runs/log-metric",
                    json={"run_id": rid, "key": "a", "value": 1, "timestamp": 1},
                    headers=who,
                ),
                403,
            )
        _refused(client.get(f"{API}/runs/get", params={"run_id": rid}, headers=outsider), 403)
        _refused(client.get(path, headers=outsider), 403)
        listed = client.post(f"{API}/experiments/search", json={}, headers=outsider).json()
        assert listed.get("experiments", []) == []
