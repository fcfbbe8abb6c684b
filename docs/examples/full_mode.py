# docs/examples/full_mode.py
"""Full mode: the prompt's text is managed through the API."""

from prompt_ledger.client import PromptLedger

with PromptLedger() as client:  # $PROMPTLEDGER_URL, $PROMPTLEDGER_API_KEY
    first = client.save_prompt("welcome", "Hello {{ name }}!", description="greeting")
    second = client.save_prompt("welcome", "Hi {{ name }}, welcome back!")
    print(first.version.version_number, second.version.version_number)  # 1 2 on a new server
    same = client.save_prompt("welcome", "Hi {{ name }}, welcome back!")
    print(same.created)  # False: identical text is the same version

    # run now: the execution records the version, rendered text, tokens, latency, ...
    execution = client.run(
        "welcome",
        variables={"name": "Ada"},
        model_name="gpt-4o-mini",
        params={"temperature": 0.2, "max_new_tokens": 200},
    )
    print(execution.status, execution.version.number, execution.response_text)

    # or queue it for the workers and wait for the result
    submission = client.submit("welcome", variables={"name": "Bob"}, model_name="gpt-4o-mini")
    print(client.wait(submission, timeout=30).response_text)

    # roll back: move the active pointer to the first version
    client.activate_version("welcome", first.version.version_number)
    print([(v.version_number, v.status) for v in client.list_versions("welcome")])
    print([(event.type, event.version_number) for event in client.list_events("welcome")])

    # the ledger, newest first, every page
    for e in client.iter_executions(prompt_name="welcome", status="succeeded"):
        print(e.id, e.version.number, e.telemetry.latency_ms, e.created_at)
