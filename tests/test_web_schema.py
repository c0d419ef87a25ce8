"""Fuzz every operation of /openapi.json as an admin: whatever the input, the server never answers 5xx.

A small schemathesis equivalent on hypothesis: parameters and bodies are drawn from the document's
schemas, mixed with hostile values (path traversal, huge numbers, odd Unicode, wrong types).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.web import Site, seed_incident

HOSTILE = st.sampled_from(
    ["", "..", "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%00", "\x00", "/etc/passwd", "a" * 5000, "门口",
     "1e309", "-1", "NaN", "9999-99-99T99:99:99", "0000-01-01T00:00:00", "9999-12-31T23:59:59+14:00", "{}", "null"]
)  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


class Document:
    """The OpenAPI document with its $refs resolved on demand."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            node: Any = self.doc
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    def values(self, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
        """Values that fit the schema, most of the time."""
        schema = self.resolve(schema)
        if "anyOf" in schema:
            return st.one_of([self.values(s) for s in schema["anyOf"]])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        kind = schema.get("type")
        if kind == "integer":
            return st.integers(-(2**70), 2**70) | st.integers(schema.get("minimum", 0), schema.get("maximum", 500))
        if kind == "number":
            return st.floats(allow_nan=False, allow_infinity=False)
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        if kind == "array":
            return st.lists(self.values(schema.get("items", {})), max_size=3)
        if kind == "object":
            props = schema.get("properties", {})
            return st.fixed_dictionaries({}, optional={k: self.values(v) for k, v in props.items()})
        if schema.get("format") == "date-time":
            return st.datetimes().map(lambda d: d.isoformat()) | HOSTILE
        return st.text(max_size=schema.get("maxLength", 40)) | HOSTILE

    def operations(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (method.upper(), path, op)
            for path, ops in self.doc["paths"].items()
            for method, op in ops.items()
            if method in ("get", "post", "put", "delete", "patch")
        ]


def test_no_input_makes_the_server_fail(site: Site) -> None:
    ids = [
        seed_incident(site.client, clip=site.media["clip"], snapshot=site.media["snapshot"]),
        seed_incident(site.client, close=False),
        seed_incident(site.client, clip=Path("/etc/passwd")),
    ]
    admin = site.login("admin")
    doc = Document(admin.get("/openapi.json").json())
    operations = [op for op in doc.operations() if op[1] != "/auth/logout"]  # it would end the fuzzing session
    assert len(operations) >= 15
    known = {"incident_id": st.sampled_from(ids), "name": st.sampled_from(["gate", "square", "oper", "view"])}
    responses: dict[tuple[str, str], set[int]] = {}

    @st.composite
    def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, Any], Any]:
        method, path, op = draw(st.sampled_from(operations))
        params: dict[str, Any] = {}
        for param in op.get("parameters", []):
            name, where = param["name"], param["in"]
            value = draw(st.one_of(known.get(name, st.nothing()), doc.values(param.get("schema", {})), HOSTILE))
            if where == "path":
                value = str(value) or "x"
                if name == "name" and value == "admin":  # keep the fuzzing admin an admin
                    value = "x"
                path = path.replace("{" + name + "}", quote(value, safe=""))
            elif where == "query" and (param.get("required") or draw(st.booleans())):
                params[name] = value if isinstance(value, str) else json.dumps(value)
        body = None
        content = op.get("requestBody", {}).get("content", {}).get("application/json")
        if content is not None and draw(st.booleans()):
            body = draw(doc.values(content["schema"]) | JSON)
        return method, path, params, body

    @settings(
        max_examples=400,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(requests())
    def check(request: tuple[str, str, dict[str, Any], Any]) -> None:
        method, path, params, body = request
        kwargs: dict[str, Any] = {"params": params} | ({"json": body} if body is not None else {})
        with admin.stream(method, path, **kwargs) as res:  # streamed: /api/events never ends by itself
            status = res.status_code
        responses.setdefault((method, path.split("/")[2] if path.count("/") > 1 else path), set()).add(status)
        assert status < 500, (method, path, params, body, status)

    check()
    statuses = {s for found in responses.values() for s in found}
    assert {200, 404, 422} <= statuses, responses  # the fuzz reached handlers, not just validation
    assert 401 not in responses.get(("GET", "incidents"), set()), "the admin session was lost while fuzzing"
