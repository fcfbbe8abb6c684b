"""The web UI over plain HTTP, on every backend: headers, the session cookie, CSRF, sign-in
edge cases, error pages, and the numbers the pages show (SPEC §11)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any

import markupsafe
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from tests.conftest import API_KEY

from prompt_ledger.api.app import create_app
from prompt_ledger.config import Settings
from prompt_ledger.ui.security import COOKIE

MODEL = "gpt-4o-mini"
API = {"X-API-Key": API_KEY}


def ui_client(settings: Settings, base_url: str = "http://testserver") -> TestClient:
    return TestClient(create_app(settings), base_url=base_url, follow_redirects=False)


@pytest.fixture
def http(settings: Settings) -> Iterator[TestClient]:
    with ui_client(settings) as client:
        yield client


def csrf_of(page_html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]*)"', page_html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client: TestClient, key: str = API_KEY) -> str:
    """Sign in through the form; returns the signed-in session's CSRF token."""
    token = csrf_of(client.get("/ui/sign-in").text)
    response = client.post("/ui/sign-in", data={"api_key": key, "csrf_token": token})
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/ui/prompts").text)


@pytest.fixture
def signed_in(http: TestClient) -> tuple[TestClient, str]:
    return http, sign_in(http)


def save(client: TestClient, name: str, text: str) -> None:
    response = client.put(f"/v1/prompts/{name}", json={"template_source": text}, headers=API)
    assert response.status_code in (200, 201), response.text


def run(client: TestClient, name: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post(
        "/v1/executions:run",
        json={"prompt_name": name, "variables": variables or {}, "model_name": MODEL},
        headers=API,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def versions(client: TestClient, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(f"/v1/prompts/{name}/versions", headers=API).json()[
        "items"
    ]
    return items


def assert_ui_headers(response: Any) -> None:
    csp = response.headers.get("content-security-policy", "")
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives.get("script-src") == "'self'", csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives.get("default-src") == "'self'"
    assert directives.get("frame-ancestors") == "'none'"
    assert response.headers.get("x-content-type-options") == "nosniff"


class TestHeaders:
    def test_every_ui_response_carries_the_csp(self, signed_in: tuple[TestClient, str]) -> None:
        client, token = signed_in
        save(client, "hdr", "hello {{ x }}")
        execution = run(client, "hdr", {"x": "1"})
        gets = [
            "/",
            "/ui",
            "/ui/sign-in",
            "/ui/prompts",
            "/ui/prompts?q=h&mode=full",
            "/ui/prompts?mode=bogus",  # 422 page
            "/ui/prompts/new",
            "/ui/prompts/hdr",
            "/ui/prompts/nope",  # 404 page
            "/ui/prompts/hdr/versions/1/activate",
            "/ui/executions",
            "/ui/executions?status=bogus",
            "/ui/executions/live",
            f"/ui/executions/{execution['id']}",
            "/ui/executions/not-a-uuid",
            "/ui/analytics",
            "/ui/analytics?window=7d&prompt=hdr",
            "/ui/no/such/page",
            "/ui/static/ui.css",
            "/ui/static/ui.js",
            "/ui/static/vendor/htmx-2.0.11/htmx.min.js",
            "/ui/static/nope.js",
        ]
        for path in gets:
            response = client.get(path)
            assert response.status_code < 500, (path, response.text)
            assert_ui_headers(response)
        posts = [
            ("/ui/prompts/hdr/versions", {"template_source": "x"}),  # no token: 403
            ("/ui/prompts/hdr/versions", {"template_source": "{{", "csrf_token": token}),  # 422
            ("/ui/prompts/hdr/versions/1/activate", {"csrf_token": token}),  # 303
            ("/ui/sign-in", {"api_key": "wrong", "csrf_token": token}),  # 401
        ]
        for path, form in posts:
            assert_ui_headers(client.post(path, data=form))

    def test_pages_are_not_cached_static_files_may_be(
        self, signed_in: tuple[TestClient, str]
    ) -> None:
        client, _ = signed_in
        assert client.get("/ui/prompts").headers["cache-control"] == "no-store"
        assert "no-store" not in client.get("/ui/static/ui.css").headers.get("cache-control", "")

    def test_the_api_is_left_alone(self, http: TestClient) -> None:
        response = http.get("/v1/prompts", headers=API)
        assert response.status_code == 200
        assert "content-security-policy" not in response.headers
        assert http.get("/health").json() == {"status": "healthy"}

    def test_root_redirects_to_the_ui(self, http: TestClient) -> None:
        response = http.get("/")
        assert response.status_code == 307 and response.headers["location"] == "/ui"


def session_cookie(response: Any) -> str:
    headers = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    found = [h for h in headers if h.startswith(f"{COOKIE}=")]
    assert found, headers
    return found[0]


class TestSessionCookie:
    def test_flags_over_http(self, http: TestClient) -> None:
        cookie = session_cookie(http.get("/ui/sign-in"))
        attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
        assert {"httponly", "samesite", "path", "max-age"} <= attrs
        assert "samesite=strict" in cookie.lower() and "path=/ui" in cookie.lower()
        assert "secure" not in attrs

    def test_secure_over_https(self, settings: Settings) -> None:
        with ui_client(settings, base_url="https://testserver") as client:
            token = csrf_of(client.get("/ui/sign-in").text)
            response = client.post("/ui/sign-in", data={"api_key": API_KEY, "csrf_token": token})
            assert response.status_code == 303
            cookie = session_cookie(response)
            assert "; secure" in cookie.lower() and "httponly" in cookie.lower()

    def test_the_cookie_never_holds_the_key(self, http: TestClient) -> None:
        token = csrf_of(http.get("/ui/sign-in").text)
        response = http.post("/ui/sign-in", data={"api_key": API_KEY, "csrf_token": token})
        cookie = session_cookie(response)
        assert API_KEY not in cookie
        # a fresh CSRF token at sign-in (no fixation of the anonymous session's token)
        assert csrf_of(http.get("/ui/prompts").text) != token

    def test_a_tampered_cookie_is_signed_out(self, signed_in: tuple[TestClient, str]) -> None:
        client, _ = signed_in
        value = client.cookies[COOKIE]
        client.cookies.clear()
        client.cookies.set(COOKIE, value[:-2] + ("AA" if value[-2:] != "AA" else "BB"), path="/ui")
        response = client.get("/ui/prompts")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/sign-in?next=")

    def test_a_cookie_from_another_secret_or_a_removed_key_is_signed_out(
        self, settings: Settings
    ) -> None:
        first = settings.model_copy(
            update={"ui_session_secret": SecretStr("one-secret-for-test-a")}
        )
        with ui_client(first) as client:
            sign_in(client)
            value = client.cookies[COOKIE]
        other_secret = settings.model_copy(
            update={"ui_session_secret": SecretStr("another-secret-b")}
        )
        other_key = first.model_copy(update={"api_key": [SecretStr("pl_a_different_key_99")]})
        for changed in (other_secret, other_key):
            with ui_client(changed) as client:
                client.cookies.set(COOKIE, value, path="/ui")
                assert client.get("/ui/prompts").status_code == 303
        with ui_client(first) as client:  # same secret and key: still signed in
            client.cookies.set(COOKIE, value, path="/ui")
            assert client.get("/ui/prompts").status_code == 200

    def test_sign_out_drops_the_cookie(self, signed_in: tuple[TestClient, str]) -> None:
        client, token = signed_in
        response = client.post("/ui/sign-out", data={"csrf_token": token})
        assert response.status_code == 303
        assert "max-age=0" in session_cookie(response).lower()
        assert client.get("/ui/prompts").status_code == 303


class TestSignIn:
    def test_a_bad_key_is_401_and_stays_signed_out(self, http: TestClient) -> None:
        token = csrf_of(http.get("/ui/sign-in").text)
        for key in ("pl_wrong", "", "   "):
            response = http.post("/ui/sign-in", data={"api_key": key, "csrf_token": token})
            assert response.status_code == 401
            assert "not accepted" in response.text
        assert http.get("/ui/prompts").status_code == 303

    def test_next_stays_inside_the_ui(self, http: TestClient) -> None:
        for target, expected in (
            ("/ui/executions?status=failed", "/ui/executions?status=failed"),
            ("https://evil.example/", "/ui/prompts"),
            ("//evil.example/ui/", "/ui/prompts"),
            ("/v1/prompts", "/ui/prompts"),
        ):
            http.cookies.clear()
            token = csrf_of(http.get("/ui/sign-in").text)
            response = http.post(
                "/ui/sign-in", data={"api_key": API_KEY, "csrf_token": token, "next": target}
            )
            assert response.headers["location"] == expected

    def test_htmx_polls_of_a_signed_out_browser_are_told_to_sign_in(self, http: TestClient) -> None:
        response = http.get("/ui/executions/live", headers={"HX-Request": "true"})
        assert response.status_code == 401
        assert response.headers["HX-Redirect"].startswith("/ui/sign-in?next=")


class TestCsrf:
    def test_every_form_post_without_a_valid_token_is_403_and_writes_nothing(
        self, signed_in: tuple[TestClient, str], settings: Settings
    ) -> None:
        client, _ = signed_in
        save(client, "guarded", "one")
        save(client, "guarded", "two")
        with ui_client(settings) as other:  # a valid token of another session
            foreign = csrf_of(other.get("/ui/sign-in").text)
        forms = [
            ("/ui/prompts/new", {"name": "sneaky", "template_source": "x"}),
            ("/ui/prompts/guarded/versions", {"template_source": "three", "activate": "on"}),
            ("/ui/prompts/guarded/versions/1/activate", {}),
            ("/ui/prompts/guarded/labels/active", {"version": "1"}),
            ("/ui/prompts/guarded/labels/canary", {"version": "1"}),
            ("/ui/sign-out", {}),
            ("/ui/sign-in", {"api_key": API_KEY}),
        ]
        for path, form in forms:
            for bad in (None, "", "forged", foreign):
                data = form if bad is None else {**form, "csrf_token": bad}
                response = client.post(path, data=data)
                assert response.status_code == 403, (path, bad)
                assert "forbidden" in response.text
        assert [v["version_number"] for v in versions(client, "guarded")] == [2, 1]
        assert versions(client, "guarded")[0]["status"] == "active"
        labels = client.get("/v1/prompts/guarded/labels", headers=API).json()["items"]
        assert [x["label"] for x in labels] == ["active"]
        assert client.get("/v1/prompts/sneaky", headers=API).status_code == 404
        assert client.get("/ui/prompts").status_code == 200  # sign-out did not happen

    def test_a_post_without_any_session_is_403(self, http: TestClient) -> None:
        response = http.post("/ui/prompts/new", data={"name": "x", "csrf_token": "x"})
        assert response.status_code == 403


class TestPromptForms:
    def test_create_then_save_then_same_text(self, signed_in: tuple[TestClient, str]) -> None:
        client, token = signed_in
        response = client.post(
            "/ui/prompts/new",
            data={
                "name": "made.in-ui_1",
                "description": "d",
                "template_source": "Line {{ a }}\r\nnext",
                "csrf_token": token,
            },
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/prompts/made.in-ui_1?saved=1"
        [v1] = versions(client, "made.in-ui_1")
        assert v1["template_source"] == "Line {{ a }}\nnext" and v1["variables"] == ["a"]
        form = {"template_source": "Line {{ a }}\nnext", "csrf_token": token, "activate": "on"}
        response = client.post("/ui/prompts/made.in-ui_1/versions", data=form)
        assert response.headers["location"].endswith("?saved=same-1")
        page = client.get(response.headers["location"]).text
        assert "no new version was saved, and version 1 is the active one" in page
        form["template_source"] = "draft only"
        del form["activate"]
        response = client.post("/ui/prompts/made.in-ui_1/versions", data=form)
        assert response.headers["location"].endswith("?saved=2")
        assert "Saved as version 2 (draft)" in client.get(response.headers["location"]).text
        assert [(v["version_number"], v["status"]) for v in versions(client, "made.in-ui_1")] == [
            (2, "draft"),
            (1, "active"),
        ]

    @pytest.mark.parametrize(
        ("name", "text", "status"),
        [
            ("bad name", "x", 422),
            ("-leading", "x", 422),
            ("ok", "{% if %}", 422),
            ("ok", "", 422),
            ("ok", "nul \x00 byte", 422),
        ],
    )
    def test_bad_new_prompts_are_refused_and_nothing_written(
        self, signed_in: tuple[TestClient, str], name: str, text: str, status: int
    ) -> None:
        client, token = signed_in
        response = client.post(
            "/ui/prompts/new", data={"name": name, "template_source": text, "csrf_token": token}
        )
        assert response.status_code == status
        assert 'role="alert"' in response.text
        assert client.get("/v1/prompts", headers=API).json()["items"] == []

    def test_an_existing_name_is_409(self, signed_in: tuple[TestClient, str]) -> None:
        client, token = signed_in
        save(client, "taken", "first")
        response = client.post(
            "/ui/prompts/new", data={"name": "taken", "template_source": "x", "csrf_token": token}
        )
        assert response.status_code == 409
        assert len(versions(client, "taken")) == 1

    def test_tracking_prompts_are_read_only(self, signed_in: tuple[TestClient, str]) -> None:
        client, token = signed_in
        body = {"prompts": [{"name": "code.owned", "template_source": "from code"}]}
        assert client.post("/v1/prompts/register-code", json=body, headers=API).status_code == 200
        page = client.get("/ui/prompts/code.owned").text
        assert "owned by application code" in page and "Save new version" not in page
        for path in (
            "/ui/prompts/code.owned/versions",
            "/ui/prompts/code.owned/versions/1/activate",
        ):
            response = client.post(path, data={"template_source": "edit", "csrf_token": token})
            assert response.status_code == 409 and "mode_mismatch" in response.text
        assert len(versions(client, "code.owned")) == 1

    def test_unknown_prompt_or_version_is_404(self, signed_in: tuple[TestClient, str]) -> None:
        client, token = signed_in
        save(client, "known", "x")
        assert client.get("/ui/prompts/unknown").status_code == 404
        assert client.get("/ui/prompts/known/versions/7/activate").status_code == 404
        response = client.post("/ui/prompts/known/versions/7/activate", data={"csrf_token": token})
        assert response.status_code == 404


class TestSection9Forms:
    def test_labels_move_through_the_service_and_bad_moves_write_nothing(
        self, signed_in: tuple[TestClient, str]
    ) -> None:
        client, token = signed_in
        for text in ("a", "b", "c"):
            save(client, "labelled", text)
        split = {"split": [{"version": 1, "weight": 30}, {"version": 2, "weight": 70}]}
        assert (
            client.put("/v1/prompts/labelled/labels/ab", json=split, headers=API).status_code == 201
        )
        page = client.get("/ui/prompts/labelled").text
        assert "v1</a> 30%" in page and "v2</a> 70%" in page  # the split, read-only
        confirm = client.get("/ui/prompts/labelled/labels/move?label=ab&version=3")
        assert confirm.status_code == 200 and "the split is replaced" in confirm.text
        response = client.post(
            "/ui/prompts/labelled/labels/ab", data={"version": "3", "csrf_token": token}
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/prompts/labelled?labelled=ab"
        for label, version, status in (
            ("Bad<b>", "1", 422),
            ("canary", "9", 404),
            ("canary", "0", 422),
            ("canary", "x", 422),
        ):
            response = client.post(
                f"/ui/prompts/labelled/labels/{label}",
                data={"version": version, "csrf_token": token},
            )
            assert response.status_code == status, (label, version, response.text)
            assert "<b>" not in response.text
        assert client.get("/ui/prompts/labelled/labels/move?label=x&version=9").status_code == 404
        assert client.get("/ui/prompts/labelled/labels/move?label=A&version=1").status_code == 422
        labels = client.get("/v1/prompts/labelled/labels", headers=API).json()["items"]
        assert [(x["label"], x["version_number"]) for x in labels] == [("active", 3), ("ab", 3)]
        # roll back `active` through the label form: an activation
        response = client.post(
            "/ui/prompts/labelled/labels/active", data={"version": "1", "csrf_token": token}
        )
        assert response.headers["location"] == "/ui/prompts/labelled?activated=1"
        assert versions(client, "labelled")[-1]["status"] == "active"

    def test_tracking_prompts_move_labels_but_not_active(
        self, signed_in: tuple[TestClient, str]
    ) -> None:
        client, token = signed_in
        body = {"prompts": [{"name": "coded.labels", "template_source": "from code"}]}
        assert client.post("/v1/prompts/register-code", json=body, headers=API).status_code == 200
        page = client.get("/ui/prompts/coded.labels").text
        assert 'id="move-label"' in page
        response = client.post(
            "/ui/prompts/coded.labels/labels/active", data={"version": "1", "csrf_token": token}
        )
        assert response.status_code == 409 and "mode_mismatch" in response.text
        response = client.post(
            "/ui/prompts/coded.labels/labels/stable", data={"version": "1", "csrf_token": token}
        )
        assert response.status_code == 303
        labels = client.get("/v1/prompts/coded.labels/labels", headers=API).json()["items"]
        assert ("stable", 1) in [(x["label"], x["version_number"]) for x in labels]

    def test_diff_uses_the_diff_service_and_refuses_half_a_pair(
        self, signed_in: tuple[TestClient, str]
    ) -> None:
        client, _ = signed_in
        save(client, "diffed", "one <b>\n")
        save(client, "diffed", "two <b>\n")
        page = client.get("/ui/prompts/diffed?from=1&to=2").text
        assert '<span class="d-del">-one &lt;b&gt;</span>' in page
        assert '<span class="d-add">+two &lt;b&gt;</span>' in page
        assert client.get("/ui/prompts/diffed?from=1").status_code == 422
        assert client.get("/ui/prompts/diffed?from=1&to=5").status_code == 404
        assert client.get("/ui/prompts/diffed?from=0&to=1").status_code == 422

    def test_a_chat_version_saves_through_the_api_schema(
        self, signed_in: tuple[TestClient, str]
    ) -> None:
        client, token = signed_in
        save(client, "chatty", "text")
        form = {
            "csrf_token": token,
            "type": "chat",
            "template_source": "ignored for a chat version",
            "messages": json.dumps([{"role": "user", "content": "Hi {{ who }}"}]),
            "config": '{"model_name": "gpt-4o-mini"}',
            "variables_schema": "",
            "activate": "on",
        }
        for field, bad in (
            ("messages", "[{"),
            ("messages", "[]"),
            ("messages", '[{"role": "user"}]'),
            ("config", '{"temperature": 2}'),
            ("variables_schema", "[1]"),
            ("type", "audio"),
        ):
            response = client.post("/ui/prompts/chatty/versions", data={**form, field: bad})
            assert response.status_code == 422, (field, bad)
            assert 'role="alert"' in response.text
            if field != "type":  # the draft is kept (a select shows only its options)
                assert str(markupsafe.escape(bad)) in response.text
        assert len(versions(client, "chatty")) == 1
        response = client.post("/ui/prompts/chatty/versions", data=form)
        assert response.headers["location"] == "/ui/prompts/chatty?saved=2"
        [v2, _] = versions(client, "chatty")
        assert v2["type"] == "chat" and v2["variables"] == ["who"]
        assert v2["messages"] == [{"role": "user", "content": "Hi {{ who }}"}]
        assert v2["config"] == {"model_name": "gpt-4o-mini"}


class TestNumbers:
    def test_cost_per_hour_and_per_prompt_come_from_the_rollups(
        self, signed_in: tuple[TestClient, str]
    ) -> None:
        client, _ = signed_in
        save(client, "priced", '[[stub reply="a b c"]] {{ n }}')
        costs = [run(client, "priced", {"n": n})["telemetry"]["cost_usd"] for n in range(2)]
        assert all(c for c in costs)
        data = _chart(client.get("/ui/analytics?prompt=priced").text)
        assert sum(data["cost_usd"]) == pytest.approx(sum(costs))
        assert len(data["cost_usd"]) == len(data["t"])
        page = client.get("/ui/executions?prompt_name=priced").text
        assert '<th scope="col">Cost</th>' in page

    def test_prompt_list_shows_last_run_and_24h_counts(
        self, signed_in: tuple[TestClient, str]
    ) -> None:
        client, _ = signed_in
        save(client, "busy", "ok {{ n }}")
        save(client, "idle", "never run")
        for n in range(3):
            run(client, "busy", {"n": n})
        save(client, "busy", "[[stub status=400]] {{ n }}")
        run(client, "busy", {"n": 4})
        page = client.get("/ui/prompts").text
        busy = page[page.index("/ui/prompts/busy") :]
        busy = busy[: busy.index("</tr>")]
        cells = re.findall(r'<td class="num">(\d+)</td>', busy)
        assert cells == ["4", "1"]
        assert "<time" in busy
        idle = page[page.index("/ui/prompts/idle") :]
        assert "never" in idle[: idle.index("</tr>")]

    def test_search_treats_wildcards_literally(self, signed_in: tuple[TestClient, str]) -> None:
        client, _ = signed_in
        for name in ("Alpha.one", "beta_two", "gamma"):
            save(client, name, name)
        assert _listed(client, "ALPHA") == ["Alpha.one"]
        assert _listed(client, "_") == ["beta_two"]
        assert _listed(client, "%") == []
        assert _listed(client, "") == ["Alpha.one", "beta_two", "gamma"]

    def test_analytics_chart_data_comes_from_the_rollups(
        self, signed_in: tuple[TestClient, str]
    ) -> None:
        client, _ = signed_in
        save(client, "charted", '[[stub reply="a b c"]] {{ n }}')
        for n in range(2):
            run(client, "charted", {"n": n})
        save(client, "other", "[[stub status=400]]")
        run(client, "other")
        for query, runs, failed in (("prompt=charted", 2, 0), ("", 3, 1), ("prompt=other", 1, 1)):
            page = client.get(f"/ui/analytics?{query}").text
            data = _chart(page)
            assert len(data["t"]) in (24, 25)  # every hour of the window, zeros included
            assert sum(data["executions"]) == runs and sum(data["failed"]) == failed
            assert sum(data["response_tokens"]) == 3 * (runs - failed)
            assert data["p95_latency_ms"][-1] is not None
        assert client.get("/ui/analytics?prompt=missing").status_code == 404
        assert client.get("/ui/analytics?window=1y").status_code == 422

    def test_ledger_filters_and_pages(self, signed_in: tuple[TestClient, str]) -> None:
        client, _ = signed_in
        save(client, "paged", "x {{ n }}")
        ids = [run(client, "paged", {"n": n})["id"] for n in range(3)]
        page = client.get("/ui/executions?prompt_name=paged&status=succeeded").text
        assert [i for i in ids if i in page] == ids
        assert (
            client.get("/ui/executions?status=failed&prompt_name=paged").text.count(
                "/ui/executions/0"
            )
            == 0
        )
        assert client.get("/ui/executions?since=yesterday").status_code == 422
        assert client.get("/ui/executions?cursor=!!").status_code == 400


class TestLiveView:
    def test_the_poll_is_204_until_the_page_changes(
        self, signed_in: tuple[TestClient, str]
    ) -> None:
        client, _ = signed_in
        save(client, "polled", "p {{ n }}")
        first = run(client, "polled", {"n": 1})
        page = client.get("/ui/executions?prompt_name=polled").text
        poll = html.unescape(re.search(r'hx-get="([^"]+)"', page).group(1))  # type: ignore[union-attr]
        assert "prompt_name=polled" in poll
        assert client.get(poll).status_code == 204  # nothing new
        second = run(client, "polled", {"n": 2})
        fragment = client.get(poll)
        assert fragment.status_code == 200
        assert_ui_headers(fragment)
        new_rows = re.findall(
            r'<tr class="is-new">\s*<td><a href="/ui/executions/([^"]+)"', fragment.text
        )
        assert new_rows == [second["id"]]
        assert first["id"] in fragment.text
        next_poll = html.unescape(re.search(r'hx-get="([^"]+)"', fragment.text).group(1))  # type: ignore[union-attr]
        assert client.get(next_poll).status_code == 204

    def test_pausing_stops_the_poll(self, signed_in: tuple[TestClient, str]) -> None:
        client, _ = signed_in
        save(client, "many", "m {{ n }}")
        for n in range(2):
            run(client, "many", {"n": n})
        first = client.get("/ui/executions?live=0").text
        assert "hx-get" not in first and "Resume live view" in first
        assert "hx-get" in client.get("/ui/executions").text


def _listed(client: TestClient, q: str) -> list[str]:
    page = client.get("/ui/prompts", params={"q": q}).text
    return re.findall(r'<td><a href="/ui/prompts/([^"]+)">', page)


def _chart(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page)
    assert found
    data: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return data


def test_a_database_outage_is_a_503_page_with_the_csp(tmp_path: Any) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url="postgresql://postgres@127.0.0.1:1/none",  # nothing listens on port 1
        api_key=API_KEY,  # type: ignore[arg-type]
        promptledger_home=tmp_path,
        sweep_interval_s=3600,
    )
    with ui_client(settings) as client:
        sign_in_page = client.get("/ui/sign-in")  # needs no database
        token = csrf_of(sign_in_page.text)
        client.post("/ui/sign-in", data={"api_key": API_KEY, "csrf_token": token})
        for path in ("/ui/prompts", "/ui/executions", "/ui/analytics"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert "unavailable" in response.text
            assert_ui_headers(response)
