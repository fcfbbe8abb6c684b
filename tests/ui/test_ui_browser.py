"""The web UI in a real headless Chromium (SPEC §11): what a person does, end to end.

One browser for the session, a fresh context (cookies, localStorage) per test. Every test
also checks that the page logged no console error: a CSP violation (an inline script or
style the policy blocked) shows up there.
"""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import expect
from tests.ui.conftest import UI_KEY, UIServer, Watched, sign_in

XSS = (
    '<script>window.__xss = 1; alert("xss")</script>'
    '<img src=x onerror="window.__xss = 2; alert(2)">'
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def no_errors(tab: Watched) -> None:
    assert tab.errors == [], tab.errors
    assert tab.dialogs == [], tab.dialogs


class TestSignIn:
    def test_root_redirects_to_sign_in_then_to_the_prompts(
        self, tab: Watched, ui_server: UIServer
    ) -> None:
        page = tab.page
        page.goto(ui_server.url + "/")
        expect(page).to_have_url(re.compile(r"/ui/sign-in\?next="))
        page.get_by_label("API key").fill(UI_KEY)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/ui/prompts$"))
        expect(page.get_by_role("heading", name="Prompts")).to_be_visible()
        cookie = next(c for c in page.context.cookies() if c["name"] == "pl_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert UI_KEY not in cookie["value"]
        no_errors(tab)

    def test_a_bad_key_shows_the_sign_in_page_with_an_error(
        self, tab: Watched, ui_server: UIServer
    ) -> None:
        sign_in(tab, ui_server, key="pl_not_the_key")
        expect(tab.page.get_by_role("alert")).to_contain_text("not accepted")
        expect(tab.page).to_have_url(re.compile(r"/ui/sign-in$"))
        # still signed out
        tab.page.goto(ui_server.url + "/ui/executions")
        expect(tab.page).to_have_url(re.compile(r"/ui/sign-in\?next=%2Fui%2Fexecutions"))
        tab.shoot("sign-in")

    def test_sign_out_drops_the_session(self, signed_in: Watched, ui_server: UIServer) -> None:
        page = signed_in.page
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/ui/sign-in$"))
        page.goto(ui_server.url + "/ui/prompts")
        expect(page).to_have_url(re.compile(r"/ui/sign-in\?next="))
        no_errors(signed_in)


class TestPrompts:
    def test_create_edit_with_a_draft_that_survives_a_reload(
        self, signed_in: Watched, ui_server: UIServer
    ) -> None:
        page = signed_in.page
        name = unique("welcome")
        page.get_by_role("link", name="New prompt").click()
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_label("Description").fill("greets new users")
        page.get_by_label("Template").fill("Hello {{ name }}!\nWelcome.")
        page.get_by_role("button", name="Create prompt").click()
        expect(page).to_have_url(re.compile(rf"/ui/prompts/{name}\?saved=1$"))
        expect(page.get_by_role("status")).to_contain_text("version 1")
        # the text went in as typed (LF line breaks: the same checksum the API would give)
        api = ui_server.api.get(f"/v1/prompts/{name}").json()
        assert api["active_version"]["template_source"] == "Hello {{ name }}!\nWelcome."

        editor = page.get_by_label(re.compile("^Template"))
        editor.fill("Hi {{ name }}, unsaved edit")
        page.reload()
        expect(page.locator("[data-draft-notice]")).to_be_visible()
        expect(editor).to_have_value("Hi {{ name }}, unsaved edit")
        page.get_by_role("button", name="Save new version").click()
        expect(page.get_by_role("status")).to_contain_text("Saved as version 2 (active)")
        expect(editor).to_have_value("Hi {{ name }}, unsaved edit")
        page.reload()  # the draft was cleared by saving
        expect(page.locator("[data-draft-notice]")).to_be_hidden()
        assert (
            ui_server.api.get(f"/v1/prompts/{name}/versions").json()["items"][0]["version_number"]
            == 2
        )
        no_errors(signed_in)

    def test_an_invalid_template_keeps_the_text_and_says_why(
        self, signed_in: Watched, ui_server: UIServer
    ) -> None:
        name = unique("broken")
        ui_server.save(name, "fine {{ x }}")
        page = signed_in.page
        page.goto(f"{ui_server.url}/ui/prompts/{name}")
        page.get_by_label(re.compile("^Template")).fill("broken {{ x ")
        page.get_by_role("button", name="Save new version").click()
        expect(page.get_by_role("alert")).to_be_visible()
        expect(page.get_by_label(re.compile("^Template"))).to_have_value("broken {{ x ")
        assert len(ui_server.api.get(f"/v1/prompts/{name}/versions").json()["items"]) == 1

    def test_roll_back_asks_for_confirmation(self, signed_in: Watched, ui_server: UIServer) -> None:
        name = unique("rollback")
        ui_server.save(name, "first {{ a }}")
        ui_server.save(name, "second {{ a }}")
        page = signed_in.page
        page.goto(f"{ui_server.url}/ui/prompts/{name}")
        page.locator("#v1 summary").click()
        page.get_by_role("link", name="Roll back to v1").click()
        expect(page.get_by_role("heading", name=re.compile("Roll back"))).to_be_visible()
        # cancelling changes nothing
        page.get_by_role("link", name="Cancel").click()
        assert (
            ui_server.api.get(f"/v1/prompts/{name}").json()["active_version"]["version_number"] == 2
        )
        page.locator("#v1 summary").click()
        page.get_by_role("link", name="Roll back to v1").click()
        signed_in.shoot("confirm-rollback")
        page.get_by_role("button", name="Yes, activate version 1").click()
        expect(page.get_by_role("status")).to_contain_text("Version 1 is now active")
        active = ui_server.api.get(f"/v1/prompts/{name}").json()["active_version"]
        assert active["version_number"] == 1
        expect(page.locator(".timeline")).to_contain_text("version 1 activated (was 2)")
        signed_in.shoot("prompt")
        no_errors(signed_in)

    def test_search_and_mode_filter(self, signed_in: Watched, ui_server: UIServer) -> None:
        tag = uuid.uuid4().hex[:6]
        ui_server.save(f"search-{tag}-alpha", "a")
        ui_server.save(f"search-{tag}-beta", "b")
        reg = ui_server.api.post(
            "/v1/prompts/register-code",
            json={"prompts": [{"name": f"search-{tag}-code", "template_source": "c"}]},
        )
        assert reg.status_code == 200
        page = signed_in.page
        page.get_by_label("Name contains").fill(tag.upper())
        page.get_by_role("button", name="Filter").click()
        rows = page.locator("tbody tr")
        expect(rows).to_have_count(3)
        page.get_by_label("Mode").select_option("tracking")
        page.get_by_role("button", name="Filter").click()
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(f"search-{tag}-code")
        rows.first.get_by_role("link").click()
        expect(page.get_by_role("heading", name=re.compile("Read-only"))).to_be_visible()
        expect(page.get_by_role("button", name="Save new version")).to_have_count(0)
        no_errors(signed_in)


class TestExecutions:
    def test_find_an_execution_in_the_ledger_and_open_it(
        self, signed_in: Watched, ui_server: UIServer
    ) -> None:
        name = unique("ledger")
        ui_server.save(name, 'Say hi to {{ who }} [[stub reply="Hi there, friend"]]')
        execution = ui_server.run(name, {"who": "Ada"})
        page = signed_in.page
        page.get_by_role("link", name="Executions").click()
        page.get_by_label("Prompt", exact=True).fill(name)
        page.get_by_role("button", name="Filter").click()
        rows = page.locator("#ledger tbody tr")
        expect(rows).to_have_count(1)
        signed_in.shoot("executions")
        rows.first.get_by_role("link").first.click()
        expect(page).to_have_url(re.compile(rf"/ui/executions/{execution['id']}$"))
        expect(page.locator("#response-text")).to_have_text("Hi there, friend")
        expect(page.locator("#rendered-prompt")).to_contain_text("Say hi to Ada")
        expect(page.locator("#variables")).to_contain_text('"who": "Ada"')
        signed_in.shoot("execution")
        page.get_by_role("link", name="v1").click()
        expect(page).to_have_url(re.compile(rf"/ui/prompts/{name}#v1$"))
        expect(page.locator("#v1 details")).to_have_attribute("open", "")
        no_errors(signed_in)

    def test_live_view_shows_new_rows(self, signed_in: Watched, ui_server: UIServer) -> None:
        name = unique("live")
        ui_server.save(name, "ping [[stub reply=pong]]")
        ui_server.run(name)
        page = signed_in.page
        page.goto(f"{ui_server.url}/ui/executions?prompt_name={name}")
        rows = page.locator("#ledger tbody tr")
        expect(rows).to_have_count(1)
        ui_server.run(name)
        expect(rows).to_have_count(2, timeout=8000)  # polled every 3 s
        expect(page.locator("#ledger tbody tr.is-new")).to_have_count(1)
        no_errors(signed_in)


class TestAnalytics:
    def test_charts_and_table_show_the_data(self, signed_in: Watched, ui_server: UIServer) -> None:
        name = unique("charts")
        ui_server.save(name, "{{ n }} [[stub reply=ok]]")
        for n in range(3):
            ui_server.run(name, {"n": n})
        ui_server.save(name, "{{ n }} [[stub status=400]]")
        ui_server.run(name, {"n": 9})
        page = signed_in.page
        page.get_by_role("link", name="Analytics").click()
        expect(page.locator(".chart[data-drawn=true]")).to_have_count(4)
        expect(page.locator(".table-wrap table")).to_contain_text(name)
        page.get_by_role("link", name=name).click()
        expect(page.get_by_role("heading", name=f"Analytics: {name}")).to_be_visible()
        stats = page.locator(".stats")
        expect(stats).to_contain_text("Executions4")
        expect(stats).to_contain_text("Failed1")
        expect(page.locator(".chart canvas")).to_have_count(4)
        signed_in.shoot("analytics")
        no_errors(signed_in)


class TestLabelsDiffChatCost:
    def test_move_a_label_and_roll_back_active_with_confirmation(
        self, signed_in: Watched, ui_server: UIServer
    ) -> None:
        name = unique("labels")
        for text in ("one {{ a }}", "two {{ a }}", "three {{ a }}"):
            ui_server.save(name, text)
        page = signed_in.page
        page.goto(f"{ui_server.url}/ui/prompts/{name}")
        form = page.locator("#move-label")
        form.get_by_label("Label").fill("canary")
        form.get_by_label("Version").select_option("2")
        form.get_by_role("button", name="Move label").click()
        expect(page.get_by_role("heading", name=re.compile("Move label canary"))).to_be_visible()
        expect(page.locator("main")).to_contain_text("It is a new label")
        page.get_by_role("button", name="Yes, move canary to version 2").click()
        expect(page.get_by_role("status")).to_contain_text("Label canary moved")
        expect(page.locator("#v2 summary .badge.label")).to_have_text("canary")
        labels = ui_server.api.get(f"/v1/prompts/{name}/labels").json()["items"]
        assert {(x["label"], x["version_number"]) for x in labels} == {("active", 3), ("canary", 2)}

        # roll back `active` to v1: cancel first (nothing moves), then confirm
        form = page.locator("#move-label")
        form.get_by_label("Label").fill("active")
        form.get_by_label("Version").select_option("1")
        form.get_by_role("button", name="Move label").click()
        expect(page.locator("main")).to_contain_text("It points at version 3 now")
        page.get_by_role("link", name="Cancel").click()
        assert (
            ui_server.api.get(f"/v1/prompts/{name}").json()["active_version"]["version_number"] == 3
        )
        page.goto(f"{ui_server.url}/ui/prompts/{name}/labels/move?label=active&version=1")
        signed_in.shoot("confirm-label")
        page.get_by_role("button", name="Yes, move active to version 1").click()
        expect(page.get_by_role("status")).to_contain_text("Version 1 is now active")
        expect(page.locator("#v1 summary .badge.label")).to_have_text("active")
        assert (
            ui_server.api.get(f"/v1/prompts/{name}").json()["active_version"]["version_number"] == 1
        )
        signed_in.shoot("prompt-labels")
        no_errors(signed_in)

    def test_diff_two_versions(self, signed_in: Watched, ui_server: UIServer) -> None:
        name = unique("diff")
        ui_server.save(name, "Hello {{ name }}.\nBye.\n")
        ui_server.save(name, "Hello {{ name }}!\nBye.\n{{ extra }}\n")
        page = signed_in.page
        page.goto(f"{ui_server.url}/ui/prompts/{name}")
        diff = page.locator("#diff-form")
        diff.get_by_label("From").select_option("1")
        diff.get_by_label("To").select_option("2")
        diff.get_by_role("button", name="Compare").click()
        expect(page).to_have_url(re.compile(r"from=1&to=2"))
        expect(page.locator("#diff .d-del")).to_have_text(["-Hello {{ name }}."])
        expect(page.locator("#diff .d-add")).to_have_text(["+Hello {{ name }}!", "+{{ extra }}"])
        expect(page.locator("#diff .d-ctx")).to_have_text(["Bye."])
        expect(page.locator("#diff")).to_contain_text("Variables added: extra")
        signed_in.shoot("diff")
        no_errors(signed_in)

    def test_save_a_chat_version_in_the_editor_with_a_draft_and_an_inline_error(
        self, signed_in: Watched, ui_server: UIServer
    ) -> None:
        name = unique("chat")
        ui_server.save(name, "text {{ q }}")
        page = signed_in.page
        page.goto(f"{ui_server.url}/ui/prompts/{name}")
        page.get_by_label("Kind").select_option("chat")
        messages = (
            '[{"role": "system", "content": "Be brief."}, '
            '{"type": "placeholder", "name": "history"}, {"role": "user", "content": "{{ q }}"}]'
        )
        page.get_by_label(re.compile("^Messages")).fill(messages)
        page.get_by_label(re.compile("^Model config")).fill('{"params": {"temperature": 0.2}}')
        page.get_by_label(re.compile("^Variables schema")).fill('{"type": "object"}')
        page.reload()  # the draft keeps every field
        expect(page.locator("[data-draft-notice]")).to_be_visible()
        expect(page.get_by_label("Kind")).to_have_value("chat")
        expect(page.get_by_label(re.compile("^Messages"))).to_have_value(messages)
        expect(page.get_by_label(re.compile("^Model config"))).to_have_value(
            '{"params": {"temperature": 0.2}}'
        )
        # a bad message is refused inline by the API's schema, the fields kept
        page.get_by_label(re.compile("^Messages")).fill('[{"role": "robot", "content": "x"}]')
        page.get_by_role("button", name="Save new version").click()
        expect(page.get_by_role("alert")).to_contain_text("messages")
        expect(page.get_by_label(re.compile("^Messages"))).to_have_value(
            '[{"role": "robot", "content": "x"}]'
        )
        assert len(ui_server.api.get(f"/v1/prompts/{name}/versions").json()["items"]) == 1
        page.get_by_label(re.compile("^Messages")).fill("not json")
        page.get_by_role("button", name="Save new version").click()
        expect(page.get_by_role("alert")).to_contain_text("messages: not JSON")

        page.get_by_label(re.compile("^Messages")).fill(messages)
        page.get_by_role("button", name="Save new version").click()
        expect(page.get_by_role("status")).to_contain_text("Saved as version 2 (active)")
        v2 = page.locator("#v2")
        expect(v2.locator(".msg .badge.role")).to_have_text(["system", "placeholder", "user"])
        expect(v2.locator(".msg.placeholder")).to_contain_text("history")
        expect(v2.locator("pre.config")).to_contain_text('"temperature": 0.2')
        active = ui_server.api.get(f"/v1/prompts/{name}").json()["active_version"]
        assert active["type"] == "chat" and active["messages"][0]["content"] == "Be brief."
        assert active["config"] == {"params": {"temperature": 0.2}}
        # the editor now starts from the chat version
        expect(page.get_by_label("Kind")).to_have_value("chat")
        signed_in.shoot("chat-version")
        # the two refusals are 422 pages (the browser logs their status); nothing else
        assert all("422" in e for e in signed_in.errors), signed_in.errors
        assert signed_in.dialogs == []

    def test_an_execution_page_shows_messages_and_cost(
        self, signed_in: Watched, ui_server: UIServer
    ) -> None:
        name = unique("chat-run")
        chat = {
            "type": "chat",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say {{ word }}"},
            ],
        }
        assert ui_server.api.put(f"/v1/prompts/{name}", json=chat).status_code == 201
        execution = ui_server.run(name, {"word": "hi"})
        assert execution["telemetry"]["cost_usd"] is not None, execution
        page = signed_in.page
        page.goto(f"{ui_server.url}/ui/executions/{execution['id']}")
        expect(page.locator("#rendered-messages .badge.role")).to_have_text(["system", "user"])
        expect(page.locator("#rendered-messages .role-user pre")).to_have_text("Say hi")
        expect(page.locator("#cost")).to_contain_text("$")
        expect(page.locator("#cost")).to_contain_text(execution["telemetry"]["price_source"])
        signed_in.shoot("execution-chat")
        page.goto(f"{ui_server.url}/ui/executions?prompt_name={name}")
        expect(page.get_by_role("columnheader", name="Cost")).to_be_visible()
        page.goto(f"{ui_server.url}/ui/analytics?prompt={name}")
        expect(page.locator(".chart[data-chart=cost]")).to_have_attribute("data-drawn", "true")
        no_errors(signed_in)


class TestHostileInput:
    def test_template_variable_and_answer_with_markup_are_shown_as_text(
        self, signed_in: Watched, ui_server: UIServer
    ) -> None:
        name = unique("xss")
        reply = "<script>alert(3)</script><img src=x onerror=alert(4)>"
        ui_server.save(name, f'{XSS} {{{{ v }}}} [[stub reply="{reply}"]]')
        execution = ui_server.run(name, {"v": XSS})
        assert execution["response_text"] == reply
        page = signed_in.page
        for path in (
            f"/ui/prompts/{name}",
            f"/ui/executions/{execution['id']}",
            f"/ui/executions?prompt_name={name}",
            f"/ui/prompts?q={name}",
        ):
            page.goto(ui_server.url + path)
            assert page.locator("main img").count() == 0
            assert page.locator("main script").count() == 0
            assert page.evaluate("window.__xss") is None
        page.goto(f"{ui_server.url}/ui/executions/{execution['id']}")
        expect(page.locator("#response-text")).to_have_text(reply)
        expect(page.locator("#rendered-prompt")).to_contain_text(XSS)
        expect(page.locator("#variables")).to_contain_text("<script>")
        page.wait_for_timeout(200)  # an onerror handler would have fired by now
        no_errors(signed_in)

    def test_chat_messages_config_diff_and_label_names_with_markup_are_text(
        self, signed_in: Watched, ui_server: UIServer
    ) -> None:
        name = unique("xss-chat")
        ui_server.save(name, f"plain {XSS}")
        chat = {
            "type": "chat",
            "messages": [
                {"role": "system", "content": XSS},
                {"role": "user", "content": "{{ q }}"},
            ],
            "config": {"params": {"temperature": 0.1}, "response_format": {"x": XSS}},
            "variables_schema": {"type": "object", "description": XSS},
        }
        response = ui_server.api.put(f"/v1/prompts/{name}", json=chat)
        assert response.status_code == 201, response.text
        execution = ui_server.run(name, {"q": XSS})
        page = signed_in.page
        for path in (
            f"/ui/prompts/{name}",
            f"/ui/prompts/{name}?from=1&to=2",
            f"/ui/prompts/{name}/versions/1/activate",
            f"/ui/prompts/{name}/labels/move?label=canary&version=2",
            f"/ui/executions/{execution['id']}",
            # a label name is [a-z0-9._-]: markup is refused, and the refusal is text too
            f"/ui/prompts/{name}/labels/move?label={XSS}&version=1",
        ):
            page.goto(ui_server.url + path)
            assert page.locator("main img").count() == 0, path
            assert page.locator("main script").count() == 0, path
            assert page.evaluate("window.__xss") is None, path
        page.goto(f"{ui_server.url}/ui/prompts/{name}")
        expect(page.locator("#v2 .msg.role-system pre")).to_have_text(XSS)
        expect(page.locator("#v2 pre.schema")).to_contain_text("<script>")
        page.goto(f"{ui_server.url}/ui/prompts/{name}?from=1&to=2")
        expect(page.locator("#diff .d-del").first).to_contain_text("<script>")
        page.goto(f"{ui_server.url}/ui/executions/{execution['id']}")
        expect(page.locator("#rendered-messages .role-user pre")).to_have_text(XSS)
        page.wait_for_timeout(200)
        # the one console entry is the refused label's 422 page: no script ran, no CSP report
        assert all("422" in e for e in signed_in.errors), signed_in.errors
        assert signed_in.dialogs == []

    def test_a_form_post_without_the_csrf_token_is_refused(
        self, signed_in: Watched, ui_server: UIServer
    ) -> None:
        name = unique("csrf")
        ui_server.save(name, "one")
        ui_server.save(name, "two")
        page = signed_in.page
        page.goto(f"{ui_server.url}/ui/prompts/{name}/versions/1/activate")
        page.locator("main input[name=csrf_token]").evaluate("el => el.remove()")
        page.get_by_role("button", name=re.compile("Yes, activate")).click()
        expect(page.get_by_role("heading", name=re.compile("403"))).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("CSRF")
        active = ui_server.api.get(f"/v1/prompts/{name}").json()["active_version"]
        assert active["version_number"] == 2


class TestLayout:
    def test_the_prompts_page_fits_a_phone(self, phone: Watched, ui_server: UIServer) -> None:
        sign_in(phone, ui_server)
        page = phone.page
        expect(page.get_by_role("heading", name="Prompts")).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390 + 1, width  # tables scroll inside their box, the page does not
        phone.shoot("prompts-phone")

    def test_keyboard_signs_in_and_skips_to_the_content(
        self, tab: Watched, ui_server: UIServer
    ) -> None:
        page = tab.page
        page.goto(ui_server.url + "/ui/sign-in")
        expect(page.get_by_label("API key")).to_be_focused()  # autofocus
        page.keyboard.type(UI_KEY)
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"/ui/prompts$"))
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="New prompt")).to_be_focused()
        tab.shoot("prompts")
        no_errors(tab)
