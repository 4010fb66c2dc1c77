"""MLflow's multipart artifact uploads against modelyard (``mpu/create``,
part PUTs to the URLs handed out, ``mpu/complete`` / ``abort``): the real
client, told by ``/server-info`` that the proxy takes them, sends a file in
parts with auth on; the joined file reads back byte-identical; ETags,
upload ids and paths are checked."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from tests.auth_helpers import ADMIN_TOKEN, bearer

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"
)
CHUNK = 256 * 1024


@pytest.fixture
def admin(mlflow_auth_server: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_auth_server)
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(1024 * 1024))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(CHUNK))
    monkeypatch.delenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", raising=False)
    mlflow.set_tracking_uri(mlflow_auth_server)
    return MlflowClient(tracking_uri=mlflow_auth_server, registry_uri=mlflow_auth_server)


def test_client_uploads_a_big_file_in_parts(
    admin: MlflowClient, mlflow_auth_server: str, tmp_path: Path, model_name: str
) -> None:
    data = os.urandom(5 * CHUNK + 12345)
    big = tmp_path / "weights.bin"
    big.write_bytes(data)
    eid = admin.create_experiment(f"mpu-{model_name}")
    rid = admin.create_run(eid).info.run_id
    admin.log_artifact(rid, str(big), artifact_path="model")

    listed = {f.path: f.file_size for f in admin.list_artifacts(rid, "model")}
    assert listed == {"model/weights.bin": len(data)}
    out = mlflow.artifacts.download_artifacts(
        run_id=rid, artifact_path="model/weights.bin", dst_path=str(tmp_path / "out")
    )
    assert Path(out).read_bytes() == data
    # A plain PUT bigger than the JSON body limit (16 MiB) streams as well.
    plain = tmp_path / "plain.bin"
    plain.write_bytes(os.urandom(17 * 1024 * 1024))
    os.environ["MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"] = "false"
    try:
        admin.log_artifact(rid, str(plain))
    finally:
        del os.environ["MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"]
    back = mlflow.artifacts.download_artifacts(
        run_id=rid, artifact_path="plain.bin", dst_path=str(tmp_path / "out2")
    )
    assert Path(back).read_bytes() == plain.read_bytes()
    # The parts went as parts: each chunk is a blob of its own in the store.
    with httpx.Client(base_url=mlflow_auth_server, headers=bearer(ADMIN_TOKEN)) as v1:
        for start in (0, 3 * CHUNK):
            digest = hashlib.sha256(data[start : start + CHUNK]).hexdigest()
            assert v1.head(f"/api/v1/blobs/{digest}").status_code == 200


def test_parts_ids_and_etags_are_checked(
    admin: MlflowClient, mlflow_auth_server: str, model_name: str
) -> None:
    eid = admin.create_experiment(f"mpu-raw-{model_name}")
    rid = admin.create_run(eid).info.run_id
    root = f"{eid}/{rid}/artifacts/dir"
    api = f"{mlflow_auth_server}/api/2.0/mlflow-artifacts/mpu"
    with httpx.Client(headers=bearer(ADMIN_TOKEN)) as c, httpx.Client() as anonymous:
        made = c.post(f"{api}/create/{root}", json={"path": "/home/me/f.bin", "num_parts": 2})
        assert made.status_code == 200, made.text
        body = made.json()
        upload_id, creds = body["upload_id"], body["credentials"]
        assert [x["part_number"] for x in creds] == [1, 2]
        # Parts carry no credentials: the id in the URL is their authority.
        etags = [
            anonymous.put(x["url"], content=chunk).headers["etag"]
            for x, chunk in zip(creds, (b"a" * 10, b"b" * 5), strict=True)
        ]
        assert etags[0].strip('"') == hashlib.sha256(b"a" * 10).hexdigest()
        forged = creds[0]["url"].replace(upload_id, "x" * len(upload_id))
        assert anonymous.put(forged, content=b"zz").status_code == 404
        beyond = creds[1]["url"].rsplit("/", 1)[0] + "/3"
        assert anonymous.put(beyond, content=b"zz").status_code == 400

        wrong = [{"part_number": 1, "etag": etags[1]}, {"part_number": 2, "etag": etags[1]}]
        r = c.post(
            f"{api}/complete/{root}",
            json={"path": "f.bin", "upload_id": upload_id, "parts": wrong},
        )
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        other = c.post(
            f"{api}/complete/{root}",
            json={"path": "g.bin", "upload_id": upload_id, "parts": wrong},
        )
        assert other.status_code == 404  # the id belongs to another file
        parts = [{"part_number": n + 1, "etag": e} for n, e in enumerate(etags)]
        r = c.post(
            f"{api}/complete/{root}",
            json={"path": "f.bin", "upload_id": upload_id, "parts": parts},
        )
        assert r.status_code == 200, r.text
        got = c.get(f"{mlflow_auth_server}/api/2.0/mlflow-artifacts/artifacts/{root}/f.bin")
        assert got.content == b"a" * 10 + b"b" * 5
        # Finished: its part URLs are dead.
        assert anonymous.put(creds[0]["url"], content=b"x").status_code == 404

        again = c.post(f"{api}/create/{root}", json={"path": "h.bin", "num_parts": 1}).json()
        assert (
            c.post(
                f"{api}/abort/{root}", json={"path": "h.bin", "upload_id": again["upload_id"]}
            ).status_code
            == 200
        )
        assert anonymous.put(again["credentials"][0]["url"], content=b"x").status_code == 404
        for bad in ("../../etc", f"{eid}/{rid}/artifacts/%2e%2e/x"):
            r = c.post(f"{api}/create/{bad}", json={"path": "f", "num_parts": 1})
            assert r.status_code in (400, 404), r.text
        # Only the local file's base name is used (as MLflow does); it must be a name.
        r = c.post(f"{api}/create/{root}", json={"path": "/tmp/..", "num_parts": 1})
        assert r.status_code == 400
        r = c.post(f"{api}/create/{root}", json={"path": "f.bin", "num_parts": 0})
        assert r.status_code == 400
        assert (
            anonymous.post(f"{api}/create/{root}", json={"path": "f", "num_parts": 1}).status_code
            == 401
        )
