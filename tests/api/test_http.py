"""Auth, the error envelope, the body cap, health and OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from prompt_ledger.api.app import create_app
from prompt_ledger.config import Settings

V1_ROUTES = [
    ("GET", "/v1/prompts"),
    ("GET", "/v1/prompts/p"),
    ("PUT", "/v1/prompts/p"),
    ("GET", "/v1/prompts/p/versions"),
    ("GET", "/v1/prompts/p/events"),
    ("POST", "/v1/prompts/p/versions/1:activate"),
]


class TestAuth:
    @pytest.mark.parametrize(("method", "path"), V1_ROUTES)
    async def test_missing_key_is_401(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        r = await client.request(
            method, path, headers={"X-API-Key": ""}, json={"template_source": "x"}
        )
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"

    @pytest.mark.parametrize(("method", "path"), V1_ROUTES)
    async def test_wrong_key_is_401_and_writes_nothing(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        r = await client.request(
            method, path, headers={"X-API-Key": "wrong"}, json={"template_source": "x"}
        )
        assert r.status_code == 401
        assert r.json()["error"] == {
            "code": "unauthorized",
            "message": "invalid API key",
            "details": {},
        }
        assert (await client.get("/v1/prompts/p")).status_code == 404

    async def test_any_of_several_keys_is_accepted(self, settings: Settings) -> None:
        settings = settings.model_copy(update={"api_key": []})
        rotated = Settings(
            _env_file=None, api_key="old-key-1,new-key-2", database_url=settings.database_url
        )  # type: ignore[call-arg,arg-type]
        app = create_app(rotated)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            for key in ("old-key-1", "new-key-2"):
                assert (await c.get("/v1/prompts", headers={"X-API-Key": key})).status_code == 200
            assert (
                await c.get("/v1/prompts", headers={"X-API-Key": "old-key-"})
            ).status_code == 401
        await app.state.promptledger.db.dispose()

    async def test_health_needs_no_key(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/health", headers={"X-API-Key": ""})
        assert r.status_code == 200
        assert r.json() == {"status": "healthy"}


class TestErrors:
    async def test_unknown_route_uses_the_envelope(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/v1/nowhere")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
        assert "/v1/nowhere" in r.json()["error"]["message"]

    async def test_wrong_method_uses_the_envelope(self, client: httpx.AsyncClient) -> None:
        r = await client.delete("/v1/prompts/p")
        assert r.status_code == 405
        assert r.json()["error"]["code"] == "method_not_allowed"

    async def test_no_stack_trace_in_responses(self, client: httpx.AsyncClient) -> None:
        r = await client.put(
            "/v1/prompts/p", content=b"\xff\xfe", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422
        assert "Traceback" not in r.text


class TestBodyLimit:
    @pytest.fixture
    async def small_client(self, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings.model_copy(update={"max_request_bytes": 1024}))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers={"X-API-Key": settings.accepted_api_keys()[0]},
        ) as c:
            yield c
        await app.state.promptledger.db.dispose()

    async def test_declared_length_over_cap_is_413(self, small_client: httpx.AsyncClient) -> None:
        r = await small_client.put("/v1/prompts/p", json={"template_source": "x" * 2000})
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"
        assert (await small_client.get("/v1/prompts/p")).status_code == 404

    async def test_chunked_body_over_cap_is_413(self, small_client: httpx.AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"template_source": "'
            for _ in range(40):
                yield b"x" * 100
            yield b'"}'

        r = await small_client.put(
            "/v1/prompts/p", content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in r.request.headers
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"
        assert (await small_client.get("/v1/prompts/p")).status_code == 404

    async def test_lying_small_content_length_is_still_capped(
        self, small_client: httpx.AsyncClient
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"template_source": "' + b"y" * 3000 + b'"}'

        r = await small_client.put(
            "/v1/prompts/p", content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413

    async def test_body_under_cap_passes(self, small_client: httpx.AsyncClient) -> None:
        r = await small_client.put("/v1/prompts/p", json={"template_source": "x" * 500})
        assert r.status_code == 201


class TestHealth:
    async def test_ready_when_database_answers(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/health/ready")
        assert r.status_code == 200
        assert r.json()["status"] == "ready"

    async def test_not_ready_when_database_is_down(self, settings: Settings) -> None:
        down = settings.model_copy(
            update={"database_url": "postgresql://postgres@127.0.0.1:1/nowhere"}
        )
        app = create_app(down)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers={"X-API-Key": settings.accepted_api_keys()[0]},
        ) as c:
            r = await c.get("/health/ready")
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "unavailable"
            assert (await c.get("/health")).status_code == 200
            r = await c.get("/v1/prompts/p")
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "unavailable"


class TestOpenAPI:
    async def test_docs_and_error_responses_are_declared(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/docs")).status_code == 200
        spec = (await client.get("/openapi.json")).json()
        put = spec["paths"]["/v1/prompts/{name}"]["put"]["responses"]
        assert {"200", "201", "401", "409", "413", "422"} <= set(put)
        assert put["409"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
        activate = spec["paths"]["/v1/prompts/{name}/versions/{number}:activate"]["post"]
        assert {"401", "404", "409", "422"} <= set(activate["responses"])
        assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


class TestReadyWithRedis:
    async def test_redis_down_is_not_ready(self, settings: Settings) -> None:
        app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            r = await c.get("/health/ready")
        await app.state.promptledger.db.dispose()
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "unavailable"
        assert r.json()["error"]["details"] == {"database": "up", "redis": "down"}

    async def test_redis_up_is_ready(self, settings: Settings) -> None:
        import redis
        from tests.conftest import service_unavailable

        try:
            redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
        except redis.RedisError as exc:
            service_unavailable("Redis", exc)
        app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:6379/0"}))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            r = await c.get("/health/ready")
        await app.state.promptledger.db.dispose()
        assert r.status_code == 200
        assert r.json() == {"status": "ready", "database": "up", "redis": "up"}
