# docs/examples/streaming_runs.py
"""Streaming runs: watch the answer arrive, then read the recorded execution."""

from prompt_ledger.client import PromptLedger, StreamDelta, StreamDone, StreamFailed

with PromptLedger() as client:
    # the stub provider streams its reply word by word, 50 ms apart
    client.save_prompt(
        "story", 'Tell {{ who }} a story [[stub reply="Once upon a time" chunk_delay=0.05]]'
    )
    for event in client.stream_run("story", variables={"who": "Ada"}, model_name="gpt-4o-mini"):
        if isinstance(event, StreamDelta):
            print(event.text, end="", flush=True)  # Once upon a time
        elif isinstance(event, StreamDone):
            e = event.execution  # as get_execution() returns it
            print()
            print(e.status, e.telemetry.response_tokens)  # succeeded 4
            print(e.telemetry.time_to_first_token_ms < e.telemetry.latency_ms)  # True
        elif isinstance(event, StreamFailed):
            print(event.code, event.message)

    # a stream cut off mid-way: an error event, and a failed row that keeps the partial text
    client.save_prompt("cut", '[[stub reply="one two three four" fault=reset]]')
    last = list(client.stream_run("cut", model_name="gpt-4o-mini"))[-1]
    assert isinstance(last, StreamFailed) and last.execution is not None
    print(last.code, repr(last.execution.response_text))  # provider_error 'one two'
