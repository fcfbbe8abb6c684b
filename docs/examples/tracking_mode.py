# docs/examples/tracking_mode.py
"""Tracking mode: the prompt texts live in code; the server versions them when they change."""

from prompt_ledger.client import PromptLedger


class Prompts:
    WELCOME = "Hello {{ name }}! Welcome to {{ product }}."
    FAREWELL = "Goodbye, {{ name }}."


def main() -> None:
    with PromptLedger() as client:  # $PROMPTLEDGER_URL, $PROMPTLEDGER_API_KEY
        # at application start: every UPPER_CASE str attribute, named "Prompts.<ATTR>";
        # change is created, new_version, unchanged or reactivated
        for result in client.register_code(Prompts):
            print(result.name, result.change, result.version_number)

        # runs the version registered above: the text this code holds
        execution = client.execute(
            "Prompts.WELCOME",
            variables={"name": "Ada", "product": "PromptLedger"},
            model_name="gpt-4o-mini",
        )
        print(execution.version.number, execution.response_text)

        submission = client.execute(
            "Prompts.FAREWELL", variables={"name": "Ada"}, model_name="gpt-4o-mini", mode="async"
        )
        print(client.wait(submission, timeout=30).status)

        for version in client.history("Prompts.WELCOME").versions:
            print(version.version_number, version.status, version.execution_count)

        stats = client.analytics(mode="tracking")
        print(stats.by_mode.tracking.executions, stats.by_mode.tracking.p95_latency_ms)


if __name__ == "__main__":
    main()
