# docs/examples/client_basics.py
"""The Python client: configuration, typed results and errors, pagination, the async twin."""

import asyncio

from prompt_ledger.client import (
    AsyncPromptLedger,
    NotFoundError,
    PromptLedger,
    PromptLedgerClientError,
    RenderError,
)

# base_url and api_key default to $PROMPTLEDGER_URL and $PROMPTLEDGER_API_KEY
with PromptLedger(timeout=30) as client:
    print(client.health().status)  # healthy

    client.save_prompt("greeting", "Hi {{ name }}!")
    try:
        client.run("greeting", model_name="gpt-4o-mini")  # no "name": nothing runs
    except RenderError as err:  # one exception class per API error code
        print(err.status, err.code, err.message)  # 422 render_error ...

    try:
        client.describe_prompt("no-such-prompt")
    except PromptLedgerClientError as err:  # the base class of them all
        assert isinstance(err, NotFoundError)
        print(err)  # not_found (404): ...

    for prompt in client.iter_prompts(page_size=100):  # follows next_cursor for you
        print(prompt.name, prompt.mode)


async def main() -> None:
    async with AsyncPromptLedger() as client:  # the same methods, as coroutines
        submission = await client.submit(
            "greeting",
            variables={"name": "Ada"},
            model_name="gpt-4o-mini",
            idempotency_key="greeting-ada-1",  # a retry of this call cannot run it twice
        )
        done = await client.wait(submission, timeout=30)  # polls with back-off
        print(done.status, done.response_text, done.telemetry.latency_ms)


asyncio.run(main())
