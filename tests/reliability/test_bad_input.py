"""Hostile and malformed requests against a real ``promptledger serve`` (uvicorn): each gets
the spec's 4xx code in the error envelope, never a 5xx, and the server stays up.

Deep nesting, non-finite numbers, over-int32 versions and NUL in model names were 500s found
by this suite; they are 4xx now (schemas/common.py, schemas/executions.py).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.reliability.harness import API_KEY, Stack

pytestmark = [pytest.mark.postgres]

RUN = "/v1/executions:run"
SUBMIT = "/v1/executions:submit"
SPEC_CODES = {
    400: {"bad_request"},
    401: {"unauthorized"},
    404: {"not_found"},
    405: {"method_not_allowed"},
    409: {"mode_mismatch", "idempotency_key_in_use", "not_cancelable"},
    413: {"payload_too_large"},
    422: {
        "validation_error",
        "invalid_template",
        "render_error",
        "prompt_too_large",
        "unknown_model",
        "idempotency_key_reused",
    },
}


@pytest.fixture(scope="module")
def http(api_server: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=api_server.base_url, headers={"X-API-Key": API_KEY}, timeout=30
    ) as client:
        r = client.put("/v1/prompts/p", json={"template_source": "Hi {{ x }}"})
        assert r.status_code in (200, 201), r.text
        yield client


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = r.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] in SPEC_CODES[status]
    if code is not None:
        assert error["code"] == code, error
    assert "Traceback" not in r.text
    return error


def run_body(**extra: Any) -> dict[str, Any]:
    return {"prompt_name": "p", "model_name": "gpt-4o-mini", "variables": {"x": 1}, **extra}


def raw_request(port: int, request: bytes) -> tuple[int, bytes, bytes]:
    """Send bytes no HTTP client would send; the status line, headers and body back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.1 (\d{3})", head)
    assert match, data[:200]
    return int(match.group(1)), head, body


class TestMalformedBodies:
    @pytest.mark.parametrize(
        "body",
        [
            b'{"template_source": "x"',  # truncated
            b'{"template_source": "x",}',  # trailing comma
            b"{'template_source': 'x'}",  # not JSON quotes
            b"\xff\xfe\x00",  # not UTF-8
            b"",  # empty
            b"null",
            b"[1, 2]",
            b'"just a string"',
        ],
        ids=[
            "truncated",
            "trailing-comma",
            "single-quotes",
            "not-utf8",
            "empty",
            "null",
            "array",
            "string",
        ],
    )
    def test_malformed_json_is_400_or_422(self, http: httpx.Client, body: bytes) -> None:
        """FastAPI answers a body it cannot decode with 422 ``validation_error``, or 400
        ``bad_request`` when the decoder itself fails (bad UTF-8, runaway nesting)."""
        r = http.put("/v1/prompts/p", content=body, headers={"content-type": "application/json"})
        assert r.status_code in (400, 422), r.text
        assert_error(r, r.status_code)

    @pytest.mark.parametrize(
        "content_type",
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None],
    )
    def test_wrong_content_type_is_422(self, http: httpx.Client, content_type: str | None) -> None:
        headers = {"content-type": content_type} if content_type else {}
        body = json.dumps(run_body()).encode()
        r = http.post(RUN, content=body, headers=headers)
        assert_error(r, 422, "validation_error")

    def test_form_encoded_body_is_422(self, http: httpx.Client) -> None:
        assert_error(http.put("/v1/prompts/p", data={"template_source": "x"}), 422)

    def test_unknown_fields_are_422(self, http: httpx.Client) -> None:
        r = http.post(RUN, json=run_body(statu="succeeded"))
        assert_error(r, 422, "validation_error")
        r = http.put("/v1/prompts/p", json={"template_source": "x", "activte": False})
        assert_error(r, 422, "validation_error")

    def test_mass_assignment_is_refused(self, http: httpx.Client) -> None:
        for field in ("status", "attempts", "id", "response_text", "checksum"):
            assert_error(http.post(RUN, json=run_body(**{field: "x"})), 422, "validation_error")


class TestNesting:
    @pytest.mark.parametrize("depth", [10, 100, 200])
    def test_moderate_nesting_is_accepted(self, http: httpx.Client, depth: int) -> None:
        variables = {"x": 1, "deep": nested(depth)}
        r = http.post(SUBMIT, json=run_body(variables=variables))
        assert r.status_code == 202, r.text

    @pytest.mark.parametrize("depth", [5_000, 100_000, 1_000_000])
    def test_absurd_nesting_is_400(self, http: httpx.Client, depth: int) -> None:
        body = b'{"prompt_name": "p", "model_name": "gpt-4o-mini", "variables": {"x": '
        body += b"[" * depth + b"1" + b"]" * depth + b"}}"
        r = http.post(RUN, content=body, headers={"content-type": "application/json"})
        assert_error(r, 400, "bad_request")

    @pytest.mark.parametrize("depth", [300, 900])
    def test_deep_nesting_is_4xx(self, http: httpx.Client, depth: int) -> None:
        body = json.dumps(run_body(variables={"x": 1, "deep": nested(depth)}))
        r = http.post(RUN, content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, r.text


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


class TestNumbers:
    def test_big_integers_in_variables_are_stored(self, http: httpx.Client) -> None:
        r = http.post(SUBMIT, json=run_body(variables={"x": 10**30}))
        assert r.status_code == 202, r.text

    def test_integer_with_too_many_digits_is_400(self, http: httpx.Client) -> None:
        body = b'{"prompt_name": "p", "model_name": "gpt-4o-mini", "variables": {"x": '
        body += b"9" * 5000 + b"}}"
        r = http.post(SUBMIT, content=body, headers={"content-type": "application/json"})
        assert_error(r, 400, "bad_request")

    @pytest.mark.parametrize("limit", ["0", "501", "-1", "1e3", "x"])
    def test_out_of_range_query_is_422(self, http: httpx.Client, limit: str) -> None:
        assert_error(http.get("/v1/executions", params={"limit": limit}), 422, "validation_error")
        assert_error(http.get("/v1/prompts", params={"limit": limit}), 422, "validation_error")

    def test_max_new_tokens_far_over_the_model_is_422(self, http: httpx.Client) -> None:
        r = http.post(RUN, json=run_body(params={"max_new_tokens": 2**70}))
        assert_error(r, 422, "validation_error")

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            (RUN, b'{"prompt_name": "p", "model_name": "gpt-4o-mini", "variables": {"x": NaN}}'),
            (
                SUBMIT,
                b'{"prompt_name": "p", "model_name": "gpt-4o-mini", "variables": {"x": 1e400}}',
            ),
            ("/v1/prompts/p", b'{"template_source": "x", "metadata": {"a": Infinity}}'),
        ],
        ids=["nan-variable", "overflowing-float", "infinity-metadata"],
    )
    def test_non_finite_numbers_are_422(self, http: httpx.Client, path: str, body: bytes) -> None:
        method = "PUT" if path.startswith("/v1/prompts") else "POST"
        r = http.request(method, path, content=body, headers={"content-type": "application/json"})
        assert_error(r, 422, "validation_error")

    @pytest.mark.parametrize("number", [2**31, 2**40, 2**70])
    def test_version_beyond_int32_is_4xx(self, http: httpx.Client, number: int) -> None:
        r = http.post(RUN, json=run_body(version=number))
        assert r.status_code in (404, 422), r.text
        r = http.post(f"/v1/prompts/p/versions/{number}:activate")
        assert r.status_code in (404, 422), r.text


class TestNul:
    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("PUT", "/v1/prompts/p", {"template_source": "a\x00b"}),
            ("PUT", "/v1/prompts/p", {"template_source": "x", "description": "\x00"}),
            ("PUT", "/v1/prompts/p", {"template_source": "x", "metadata": {"k\x00": 1}}),
            ("POST", RUN, run_body(variables={"x": "a\x00"})),
            ("POST", SUBMIT, run_body(variables={"x": 1, "y\x00": 1})),
            ("POST", SUBMIT, run_body(metadata={"m": ["\x00"]})),
            (
                "POST",
                "/v1/prompts/register-code",
                {"prompts": [{"name": "t", "template_source": "\x00"}]},
            ),
        ],
    )
    def test_nul_in_json_is_422(
        self, http: httpx.Client, method: str, path: str, body: dict[str, Any]
    ) -> None:
        error = assert_error(http.request(method, path, json=body), 422)
        assert error["code"] in ("validation_error", "unknown_model")

    def test_nul_in_model_name_is_422(self, http: httpx.Client) -> None:
        assert_error(http.post(SUBMIT, json=run_body(model_name="gpt\x00")), 422)

    @pytest.mark.parametrize(
        "url",
        [
            "/v1/prompts/a%00b",
            "/v1/executions?prompt_name=a%00b",
            "/v1/prompts/p/history?mode=%00",
        ],
    )
    def test_nul_in_path_or_query_is_422(self, http: httpx.Client, url: str) -> None:
        assert_error(http.get(url), 422, "validation_error")

    @pytest.mark.parametrize("url", ["/v1/executions?cursor=%00", "/v1/prompts?cursor=%00"])
    def test_nul_in_cursor_is_400(self, http: httpx.Client, url: str) -> None:
        assert_error(http.get(url), 400, "bad_request")


class TestBodySize:
    def test_declared_oversize_is_413(self, http: httpx.Client) -> None:
        body = b'{"template_source": "' + b"x" * (9 * 1024 * 1024) + b'"}'
        r = http.put("/v1/prompts/p", content=body, headers={"content-type": "application/json"})
        assert_error(r, 413, "payload_too_large")

    def test_chunked_oversize_is_413(self, http: httpx.Client) -> None:
        def chunks() -> Iterator[bytes]:
            yield b'{"template_source": "'
            for _ in range(9 * 1024):
                yield b"x" * 1024
            yield b'"}'

        r = http.put(
            "/v1/prompts/p", content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "payload_too_large")

    def test_lying_content_length_is_413(self, api_server: Stack) -> None:
        """A small declared length over a huge body: the cap counts what really arrives."""
        request = (
            b"PUT /v1/prompts/p HTTP/1.1\r\nHost: x\r\nX-API-Key: " + API_KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 99999999999\r\n"
            b"Connection: close\r\n\r\n{}"
        )
        status, _, _ = raw_request(api_server.port, request)
        assert status == 413

    def test_template_over_its_cap_is_422(self, http: httpx.Client) -> None:
        r = http.put("/v1/prompts/big", json={"template_source": "x" * 300_000})
        assert 400 <= r.status_code < 500
        assert r.status_code in (413, 422), r.text


class TestIdempotencyKeys:
    def test_255_printable_characters_are_accepted(self, http: httpx.Client) -> None:
        r = http.post(SUBMIT, json=run_body(), headers={"Idempotency-Key": "~" * 255})
        assert r.status_code == 202, r.text

    @pytest.mark.parametrize("key", ["x" * 256, "x" * 10_000, "", "a\tb"])
    def test_bad_keys_are_400(self, http: httpx.Client, key: str) -> None:
        r = http.post(SUBMIT, json=run_body(), headers={"Idempotency-Key": key})
        assert_error(r, 400, "bad_request")

    @pytest.mark.parametrize(
        "key", [b"\xc3\xa9t\xc3\xa9", b"\xe9", b"a\x7fb", b"a\x01b", b"a\x00b", b"a\x1bb"]
    )
    def test_non_ascii_and_control_keys_are_400(self, api_server: Stack, key: bytes) -> None:
        """Sent raw (clients refuse to). Control characters are refused by uvicorn's HTTP
        parser before the app runs (a plain-text 400); the rest by the app (the envelope)."""
        body = json.dumps(run_body()).encode()
        request = (
            b"POST /v1/executions:submit HTTP/1.1\r\nHost: x\r\nX-API-Key: "
            + API_KEY.encode()
            + b"\r\nContent-Type: application/json\r\nIdempotency-Key: "
            + key
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        status, head, answer = raw_request(api_server.port, request)
        assert status == 400, answer
        if b"application/json" in head.lower():
            assert json.loads(answer)["error"]["code"] == "bad_request"

    def test_a_rejected_request_does_not_use_up_its_key(self, http: httpx.Client) -> None:
        key = "reliability-unused-key"
        r = http.post(SUBMIT, json=run_body(variables={}), headers={"Idempotency-Key": key})
        assert_error(r, 422, "render_error")
        r = http.post(SUBMIT, json=run_body(), headers={"Idempotency-Key": key})
        assert r.status_code == 202, r.text


class TestNames:
    @pytest.mark.parametrize(
        "name",
        ["-abc", ".hidden", "_x", "a b", "a:b", "x" * 129, "%C3%A4", "a%00b", "a%0Ab", "a+b"],
    )
    def test_names_outside_the_alphabet_are_422(self, http: httpx.Client, name: str) -> None:
        assert_error(
            http.put(f"/v1/prompts/{name}", json={"template_source": "x"}), 422, "validation_error"
        )
        assert_error(http.get(f"/v1/prompts/{name}"), 422, "validation_error")

    @pytest.mark.parametrize("name", ["a b", "ä", "", "x" * 129, "../etc"])
    def test_names_in_bodies_are_422(self, http: httpx.Client, name: str) -> None:
        assert_error(http.post(RUN, json=run_body(prompt_name=name)), 422, "validation_error")
        r = http.post(
            "/v1/prompts/register-code", json={"prompts": [{"name": name, "template_source": "x"}]}
        )
        assert_error(r, 422, "validation_error")

    def test_longest_allowed_name_works(self, http: httpx.Client) -> None:
        name = "a" + "b" * 127
        r = http.put(f"/v1/prompts/{name}", json={"template_source": "x"})
        assert r.status_code == 201, r.text


class TestAuth:
    @pytest.mark.parametrize("key", [None, "x", API_KEY[:-1], API_KEY.upper(), API_KEY + "x"])
    def test_wrong_or_missing_keys_are_401(self, api_server: Stack, key: str | None) -> None:
        headers = {"X-API-Key": key} if key is not None else {}
        for method, path in (("GET", "/v1/prompts"), ("POST", RUN), ("GET", "/v1/executions")):
            r = httpx.request(method, f"{api_server.base_url}{path}", headers=headers, json={})
            assert_error(r, 401, "unauthorized")


def test_the_server_survived_all_of_it(api_server: Stack, http: httpx.Client) -> None:
    assert api_server.serve is not None and api_server.serve.running
    assert http.get("/health").json() == {"status": "healthy"}
    assert "Traceback" not in http.get("/v1/prompts").text
