"""Model families over REST v1 (issue 14): lineage body fields, the family,
variants and ancestry routes, their errors."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.helpers import assert_error, push

BASE = "/api/v1/models/default"


def _family(client: TestClient) -> None:
    push(client, "fraud", {"w.pt": b"torch"}, format="pytorch", metrics={"auc": 0.9})
    client.put(f"{BASE}/fraud/aliases/production", json={"version": "1"})
    push(
        client,
        "fraud-onnx",
        {"m.onnx": b"onnx"},
        format="onnx",
        metrics={"auc": 0.89},
        lineage={
            "parent": "fraud@production",
            "relation": "converted",
            "recipe": {"tool": "skl2onnx", "tool_version": "1.17.0", "options": {"opset": 17}},
        },
    )
    push(
        client,
        "fraud-int8",
        {"m.onnx": b"int8"},
        format="onnx",
        lineage={"parent": "fraud-onnx/1", "relation": "quantized"},
    )


def test_lineage_fields_round_trip(client: TestClient) -> None:
    _family(client)
    onnx = client.get(f"{BASE}/fraud-onnx/versions/1").json()["lineage"]
    assert onnx["original"] == "default/fraud/1" and onnx["parent"] == "default/fraud/1"
    assert onnx["recipe"] == {
        "tool": "skl2onnx",
        "tool_version": "1.17.0",
        "options": {"opset": 17},
    }
    assert round(onnx["metric_delta"]["auc"], 6) == -0.01
    root = client.get(f"{BASE}/fraud/versions/1").json()["lineage"]
    assert root["recipe"] is None and root["metric_delta"] is None


def test_family_variants_ancestry(client: TestClient) -> None:
    _family(client)
    fam = client.get(f"{BASE}/fraud-int8/versions/1/family").json()
    assert fam["of"] == "default/fraud-int8/1" and fam["root"] == "default/fraud/1"
    assert [(m["version"]["ref"], m["parent"], m["depth"]) for m in fam["members"]] == [
        ("default/fraud/1", None, 0),
        ("default/fraud-onnx/1", "default/fraud/1", 1),
        ("default/fraud-int8/1", "default/fraud-onnx/1", 2),
    ]
    r = client.get(
        f"{BASE}/fraud/versions/production/variants", params={"format": "onnx", "latest": "true"}
    )
    assert [v["ref"] for v in r.json()["variants"]] == ["default/fraud-int8/1"]
    r = client.get(f"{BASE}/fraud/versions/1/variants", params={"relation": "converted"})
    assert [v["ref"] for v in r.json()["variants"]] == ["default/fraud-onnx/1"]
    r = client.get(f"{BASE}/fraud-int8/versions/latest/ancestry")
    assert [v["ref"] for v in r.json()["ancestry"]] == ["default/fraud-onnx/1", "default/fraud/1"]
    r = client.post("/api/v1/search/versions", json={"filter": "original = 'default/fraud/1'"})
    assert {v["ref"] for v in r.json()["versions"]} == {
        "default/fraud-onnx/1",
        "default/fraud-int8/1",
    }


def test_family_errors(client: TestClient) -> None:
    _family(client)
    r = client.get(
        f"{BASE}/fraud/versions/1/variants", params={"format": "coreml", "latest": "true"}
    )
    assert assert_error(r, 404, "VARIANT_NOT_FOUND")["details"]["format"] == "coreml"
    r = client.get(f"{BASE}/fraud/versions/1/variants", params={"relation": "baked"})
    assert_error(r, 400, "INVALID_RELATION")
    assert_error(client.get(f"{BASE}/fraud/versions/9/family"), 404, "VERSION_NOT_FOUND")
    assert_error(client.get(f"{BASE}/nope/versions/1/ancestry"), 404, "MODEL_NOT_FOUND")
    r = client.post(
        f"{BASE}/fraud/versions", json={"lineage": {"parent": "fraud/1", "relation": "baked"}}
    )
    assert_error(r, 400, "INVALID_RELATION")
    r = client.post(
        f"{BASE}/fraud/versions",
        json={"lineage": {"parent": "fraud/1", "recipe": {"options": {}}}},
    )
    assert_error(r, 400, "INVALID_RECIPE")
    push(client, "churn", {"c": b"c"})
    r = client.post(
        f"{BASE}/fraud/versions",
        json={"lineage": {"parent": "fraud-int8/1", "original": "churn/1"}},
    )
    assert_error(r, 400, "LINEAGE_MISMATCH")
    r = client.post("/api/v1/search/versions", json={"filter": "parent = 'fraud/1'"})
    assert_error(r, 400, "INVALID_FILTER")


def test_resources_route(client: TestClient) -> None:
    from tests.helpers import upload

    push(client, "det", {"model.onnx": b"weights", "resources/thresholds.json": b"{}"})
    client.put(f"{BASE}/det/aliases/production", json={"version": "1"})
    digest = upload(client, b'{"t": 1}')
    r = client.post(
        f"{BASE}/det/versions/production/resources",
        json={
            "resources": [{"name": "thresholds.json", "digest": digest, "size": 8}],
            "alias": "production",
            "reason": "tuned",
        },
    )
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["version"] == 2 and "production" in v["aliases"]
    assert v["lineage"]["parent"] == "default/det/1" and v["lineage"]["relation"] == "retuned"
    assert [(x["name"], x["path"], x["digest"]) for x in v["resources"]] == [
        ("thresholds.json", "resources/thresholds.json", digest)
    ]
    assert {f["path"] for f in v["files"]} == {"model.onnx", "resources/thresholds.json"}
    listed = client.get(f"{BASE}/det/versions/1").json()["resources"]
    assert [x["name"] for x in listed] == ["thresholds.json"] and listed[0]["digest"] != digest
    r = client.post(f"{BASE}/det/versions/1/resources", json={"resources": []})
    assert_error(r, 400, "INVALID_RESOURCES")
    r = client.post(
        f"{BASE}/det/versions/1/resources",
        json={"resources": [{"name": "x", "digest": "1" * 64, "size": 1}]},
    )
    assert_error(r, 422, "BLOB_MISSING")
    r = client.post(
        f"{BASE}/det/versions/7/resources",
        json={"resources": [{"name": "x", "digest": digest, "size": 8}]},
    )
    assert_error(r, 404, "VERSION_NOT_FOUND")


def test_promote_family_route(client: TestClient) -> None:
    _family(client)
    client.put(
        "/api/v1/models/default/fraud-int8/policy",
        json={"protected_aliases": ["production"], "required_tags": ["reviewed"]},
    )
    r = client.post(
        f"{BASE}/fraud/versions/production/promote",
        json={"action": "alias", "alias": "production", "with_variants": ["onnx"]},
    )
    assert_error(r, 409, "POLICY_VIOLATION")
    refused = r.json()["error"]["details"]["refused"]
    assert [x["ref"] for x in refused] == ["default/fraud-int8/1"]
    r = client.post(
        f"{BASE}/fraud/versions/1/promote",
        json={"action": "publish", "with_variants": ["onnx"]},
    )
    assert_error(r, 409, "POLICY_VIOLATION")
    assert client.get(f"{BASE}/fraud/versions/1").json()["state"] == "ready"
    client.delete("/api/v1/models/default/fraud-int8/policy")
    r = client.post(
        f"{BASE}/fraud/versions/1/promote",
        json={"action": "publish", "with_variants": ["onnx"], "archive_previous": True},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [
        (p["version"]["ref"], p["format"], p["changed"], p["before"]) for p in body["parts"]
    ] == [
        ("default/fraud/1", None, True, "ready"),
        ("default/fraud-int8/1", "onnx", True, "ready"),
    ]
    (entry,) = client.get("/api/v1/audit", params={"action": "family.*"}).json()["entries"]
    assert (
        entry["action"] == "family.promoted" and entry["payload"]["change_id"] == body["change_id"]
    )
    for bad in (
        {"action": "publish", "with_variants": []},
        {"action": "deploy", "with_variants": ["onnx"]},
        {"action": "publish", "with_variants": ["on nx"]},
        {"action": "publish"},
    ):
        assert client.post(f"{BASE}/fraud/versions/1/promote", json=bad).status_code in (400, 422)
    r = client.post(
        f"{BASE}/fraud/versions/1/promote", json={"action": "publish", "with_variants": ["tflite"]}
    )
    assert_error(r, 404, "VARIANT_NOT_FOUND")
