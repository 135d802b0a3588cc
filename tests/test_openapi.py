"""The OpenAPI schema tells the truth about answers; tests/fuzz checks it against a live server."""

from __future__ import annotations

import re
from collections.abc import Iterator


def test_405_is_json_and_allow_lists_every_method_of_the_path(client, user) -> None:  # type: ignore[no-untyped-def]
    response = client.request("PUT", "/api/projects/1", headers=user.headers)
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert "PUT is not allowed here" in response.json()["detail"]


def test_errors_statuses_and_file_types_are_documented(client) -> None:  # type: ignore[no-untyped-def]
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    upload = paths["/api/projects/{pid}/images"]["post"]
    assert {"401", "403", "404", "409", "413", "422", "507"} <= set(upload["responses"])
    error = upload["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert error.endswith("/ValidationErrorOut")
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    body = upload["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    files = schema["components"]["schemas"][body.rsplit("/", 1)[1]]["properties"]["files"]
    assert files["minItems"] == 1
    login = paths["/api/auth/login"]["post"]["responses"]
    assert "Retry-After" in login["429"]["headers"]
    thumbnail = paths["/api/images/{iid}/thumbnail"]["get"]["responses"]["200"]["content"]
    assert list(thumbnail) == ["image/jpeg"]
    events = paths["/api/runs/{rid}/events"]["get"]["responses"]["200"]["content"]
    assert list(events) == ["text/event-stream"]
    ids = schema["components"]["schemas"]["ImageIds"]["properties"]["ids"]
    assert (ids["minItems"], ids["items"]["maximum"]) == (1, 2**31 - 1)


def test_every_error_is_documented_as_json_even_where_the_operation_streams(client, user) -> None:  # type: ignore[no-untyped-def]
    """An error from the run's event stream is JSON: documented as text/event-stream it was a
    schema violation (schemathesis ST105 on a deleted run's 404)."""
    schema = client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and "content" in response:
                    assert list(response["content"]) == ["application/json"], (method, path)
    missing = client.get("/api/runs/999/events", headers=user.headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"


def _patterns(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def test_every_pattern_in_the_schema_is_anchored_like_the_servers_checks(client) -> None:  # type: ignore[no-untyped-def]
    """A JSON Schema pattern matches anywhere in the value: unanchored, the documented colour
    would admit " #a1b2c3" and "#a1b2c3ff", which the server refuses."""
    schema = client.get("/openapi.json").json()
    patterns = set(_patterns(schema))
    assert patterns
    for pattern in patterns:
        assert pattern.startswith("^") and pattern.endswith("$"), pattern
    label = schema["components"]["schemas"]["LabelIn"]
    colour = next(iter(_patterns(label["properties"]["color"])))
    assert re.search(colour, "#a1b2c3")
    for bad in (" #a1b2c3", "#a1b2c3ff", "x#a1b2c3"):
        assert not re.search(colour, bad), bad
