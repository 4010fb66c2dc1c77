"""The OpenAPI document is a contract: the errors, rules and methods it states are true.

The live fuzzing run is ``test_openapi_schemathesis.py``; these are the fast checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from modelyard.api.access import declared
from modelyard.api.app import create_app
from modelyard.api.openapi import ERROR_SCHEMA, NAME, error_statuses
from modelyard.domain.errors import InvalidInput
from modelyard.domain.names import (
    ALIAS_PATTERN,
    DIGEST_PATTERN,
    KEY_PATTERN,
    NAME_PATTERN,
    validate_alias,
    validate_digest,
    validate_key,
    validate_name,
)
from modelyard.settings import Settings
from tests.auth_helpers import auth_settings

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("contract")
    settings = Settings(data_dir=tmp, db=f"sqlite:///{tmp / 'r.db'}")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def spec(app_client: TestClient) -> dict[str, Any]:
    return dict(app_client.get("/openapi.json").json())


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


def test_every_route_documents_its_error_statuses(
    app_client: TestClient, spec: dict[str, Any]
) -> None:
    seen = 0
    for route in app_client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods:
            op = spec["paths"][route.path_format][method.lower()]
            wanted = error_statuses(route, method, declared(route))
            documented = {int(s) for s in op["responses"] if s.isdigit() and int(s) >= 400}
            assert wanted <= documented, (method, route.path_format, wanted - documented)
            rule = declared(route)
            assert rule is not None
            if not rule.public:
                assert {401, 403} <= documented, (method, route.path_format)
            if route.dependant.path_params:
                assert {400, 404} <= documented, (method, route.path_format)
            if route.body_field is not None:
                assert {413, 422} <= documented, (method, route.path_format)
            seen += 1
    assert seen > 50


def test_error_responses_use_the_one_error_body(spec: dict[str, Any]) -> None:
    assert spec["components"]["schemas"]["Error"] == ERROR_SCHEMA
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method, op in _operations(spec):
        for status, response in op["responses"].items():
            if status.isdigit() and int(status) >= 400:
                if method == "head":
                    assert "content" not in response, (path, status)  # no body
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_error_bodies_match_the_documented_schema(app_client: TestClient) -> None:
    import jsonschema_rs

    validator = jsonschema_rs.validator_for(ERROR_SCHEMA)
    answers = [
        app_client.get("/api/v1/models/default/nope"),  # 404 domain error
        app_client.post("/api/v1/models", json={"name": "1bad"}),  # 400
        app_client.post("/api/v1/models", json={"nam": "x"}),  # 422 validation
        app_client.post("/api/v1/models", content=b"{", headers={"content-type": "x/y"}),
        app_client.request("OPTIONS", "/api/v1/models"),  # 405
        app_client.get("/no/such/route"),  # 404 framework
    ]
    for r in answers:
        assert r.status_code >= 400, r
        assert validator.is_valid(r.json()), (r.status_code, r.text)


def test_405_allow_lists_every_method_routed_for_the_path(
    app_client: TestClient, spec: dict[str, Any]
) -> None:
    for path, item in spec["paths"].items():
        documented = {m.upper() for m in item if m in HTTP_METHODS}
        url = path.replace("{", "").replace("}", "")
        r = app_client.request("TRACE", url)
        assert r.status_code == 405, (path, r.status_code)
        allowed = {m.strip() for m in r.headers["allow"].split(",")}
        assert allowed == documented, (path, allowed, documented)


def test_bearer_auth_is_documented_when_on(tmp_path: Path, sqlite_url: str) -> None:
    with TestClient(create_app(auth_settings(tmp_path, sqlite_url))) as client:
        doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, method, op in _operations(doc):
        public = op["x-required-permission"] == "public"
        assert ("security" in op) != public, (method, path)


def test_no_security_is_documented_when_auth_is_off(spec: dict[str, Any]) -> None:
    assert "securitySchemes" not in spec["components"]
    assert not any("security" in op for _, _, op in _operations(spec))


def test_405_allow_with_auth_on(tmp_path: Path, sqlite_url: str) -> None:
    with TestClient(create_app(auth_settings(tmp_path, sqlite_url))) as client:
        r = client.request("OPTIONS", "/api/v1/webhooks/1")
        assert r.status_code == 405
        assert r.headers["allow"] == "DELETE, GET, PATCH"


def test_path_parameters_state_the_name_rules(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/api/v1/models/{namespace}/{name}/versions/{version}"]["get"]
    params = {p["name"]: p["schema"] for p in op["parameters"]}
    assert params["namespace"]["pattern"] == NAME["pattern"]
    assert params["name"]["maxLength"] == 128
    roles = spec["paths"]["/api/v1/roles/{namespace}/{user}/{role}"]["put"]["parameters"]
    role = next(p for p in roles if p["name"] == "role")
    assert set(role["schema"]["enum"]) == {"consumer", "reader", "writer", "reviewer", "admin"}
    body = spec["components"]["schemas"]["ModelCreate"]["properties"]
    assert body["name"]["pattern"] == NAME_PATTERN
    assert body["tags"]["propertyNames"]["pattern"] == KEY_PATTERN


# The document's patterns (ECMA-262: "$" is the end of the string) and the
# service's checks accept exactly the same strings.
RULES = [
    (NAME_PATTERN, validate_name),
    (ALIAS_PATTERN, validate_alias),
    (KEY_PATTERN, validate_key),
    (DIGEST_PATTERN, validate_digest),
]
CANDIDATES = st.one_of(
    st.text(max_size=12),
    st.from_regex(NAME_PATTERN),
    st.from_regex(KEY_PATTERN),
    st.from_regex(DIGEST_PATTERN),
    st.from_regex(NAME_PATTERN).map(lambda s: s + "\n"),
)


@settings(max_examples=300, deadline=None)
@given(CANDIDATES)
def test_documented_patterns_agree_with_the_service(value: str) -> None:
    for pattern, check in RULES:
        documented = re.fullmatch(pattern, value) is not None
        try:
            check(value)
            accepted = True
        except InvalidInput:
            accepted = False
        assert documented == accepted, (pattern, value)


def test_numbers_and_booleans_are_what_the_document_says(app_client: TestClient) -> None:
    # pydantic's lax mode took `false` for an integer and "1" for a boolean,
    # which the document (JSON Schema) calls schema-violating.
    c = app_client
    assert c.post("/api/v1/namespaces", json={"name": "numbers"}).status_code == 201
    url = "/api/v1/namespaces/numbers/policy"
    for bad in ({"required_approvals": False}, {"required_approvals": "1"}):
        r = c.put(url, json=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "VALIDATION_ERROR", bad
    assert c.put(url, json={"require_signature": 1}).status_code == 422
    # 1.0 is an integer in JSON Schema, and accepted as one.
    assert c.put(url, json={"required_approvals": 1.0}).json()["policy"]["required_approvals"] == 1


@pytest.mark.parametrize("value", ["1bad", "nosuchthing", "0"])
def test_answers_to_bad_requests_are_documented(
    app_client: TestClient, spec: dict[str, Any], value: str
) -> None:
    # Whatever a route answers a malformed or dangling request with is among
    # the statuses its operation documents.
    for path, method, op in _operations(spec):
        if "text/event-stream" in op["responses"].get("200", {}).get("content", {}):
            continue  # a stream that opens does not end
        url = re.sub(r"\{[^}]+\}", value, path)
        for body in (None, {}, {"unexpected": 1}):
            if body is not None and "requestBody" not in op:
                continue
            r = app_client.request(method.upper(), url, json=body)
            documented = {int(s) for s in op["responses"] if s.isdigit()}
            assert r.status_code in documented, (method, path, body, r.status_code, r.text)


def test_integers_beyond_64_bits_are_refused_not_a_500(app_client: TestClient) -> None:
    # Found by the schemathesis run: orjson cannot encode them into the event.
    c = app_client
    huge = 895772284368295559168
    r = c.post("/api/v1/models", json={"name": "big", "metadata": {"n": {"m": [huge]}}})
    assert r.status_code == 400 and r.json()["error"]["details"] == {"field": "metadata"}
    assert c.post("/api/v1/models", json={"name": "big"}).status_code == 201
    for body in (
        {"draft": True, "metadata": {"n": -huge}},
        {"draft": True, "signature": {"inputs": [{"shape": [huge]}]}},
        {"draft": True, "lineage": {"datasets": [{"rows": huge}]}},
    ):
        r = c.post("/api/v1/models/default/big/versions", json=body)
        assert r.status_code == 400, (body, r.text)
    r = c.post(
        "/api/v1/models/default/big/versions", json={"draft": True, "metadata": {"n": 2**63 - 1}}
    )
    assert r.status_code == 201, r.text
