# docs/examples/convert_modes.py
"""Moving a prompt between modes: its versions and executions stay with it."""

from prompt_ledger.client import ModeMismatchError, PromptLedger

TEXT = "Welcome, {{ name }}!"


class Onboarding:
    WELCOME = TEXT  # the text the API had: registering it creates no version


with PromptLedger() as client:
    # the prompt starts in full mode, edited through the API
    client.save_prompt("Onboarding.WELCOME", TEXT)

    # hand it to the code: from now on the application registers its text
    client.convert("Onboarding.WELCOME", to="tracking")
    print(client.register_code(Onboarding)[0].change)  # unchanged
    client.execute("Onboarding.WELCOME", variables={"name": "Ada"}, model_name="gpt-4o-mini")
    try:
        client.save_prompt("Onboarding.WELCOME", "edited in the API")
    except ModeMismatchError as err:  # the code owns it now; the message names the right route
        print(err.message)

    # and back: the API owns the text again; every version and execution is kept
    client.convert("Onboarding.WELCOME", to="full")
    client.save_prompt("Onboarding.WELCOME", "Welcome aboard, {{ name }}!")
    history = client.history("Onboarding.WELCOME")
    print([(v.version_number, v.status, v.execution_count) for v in history.versions])
    print([event.type for event in client.list_events("Onboarding.WELCOME")])
