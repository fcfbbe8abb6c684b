# docs/examples/labels_and_splits.py
"""Labels: named pointers to versions, and A/B traffic splits between versions."""

from prompt_ledger.client import PromptLedger

with PromptLedger() as client:  # $PROMPTLEDGER_URL, $PROMPTLEDGER_API_KEY
    v1 = client.save_prompt("banner", "Buy now, {{ name }}!").version.version_number
    v2 = client.save_prompt("banner", "{{ name }}, your cart misses you").version.version_number

    # "production" keeps serving v1 while "active" (the latest save) moved to v2
    client.set_label("banner", "production", version=v1)
    run = client.run(
        "banner", label="production", variables={"name": "Ada"}, model_name="gpt-4o-mini"
    )
    print(run.label, run.version.number == v1, run.response_text)

    # A/B test: 90% of subjects get v1, 10% get v2. The same subject (a user or session
    # id) always lands on the same variant while the split is unchanged.
    client.set_label("banner", "ab", split=[(v1, 90), (v2, 10)])
    picks = {
        user: client.run(
            "banner", label="ab", subject=user, variables={"name": user}, model_name="gpt-4o-mini"
        ).version.number
        for user in ("u-1", "u-2", "u-3")
    }
    again = client.run(
        "banner", label="ab", subject="u-1", variables={"name": "u-1"}, model_name="gpt-4o-mini"
    )
    print("sticky:", again.version.number == picks["u-1"])

    print({x.label: x.version_number or x.split for x in client.list_labels("banner")})
    # every move is in the history: what did "production" serve at time T?
    print([(e.label, e.version_number) for e in client.list_events("banner") if e.label])

    # what changed between the two versions
    diff = client.diff("banner", v1, v2)
    print(diff.changes.template, diff.changes.variables_added)
    print(diff.unified)

    client.delete_label("banner", "ab")  # the A/B test is over
