# docs/examples/models_and_cost.py
"""Models and cost: register a model with its prices, see what a run cost, sum it up."""

from prompt_ledger.client import PromptLedger, UnknownModelError

with PromptLedger() as client:
    # add a model (created) or change only the fields given; prices in USD per 1M tokens
    client.put_model(
        "my-finetune",
        max_tokens=8192,
        pricing={"input_per_mtok": 0.30, "output_per_mtok": 1.20},
    )
    for model in client.list_models():  # GET /v1/models, in OpenAI's list shape
        print(model.id, model.is_active, model.pricing)

    client.save_prompt("summary", "Summarise: {{ text }}")
    run = client.run("summary", variables={"text": "quarterly numbers"}, model_name="my-finetune")
    print(f"{run.telemetry.cost_usd:.8f}", run.telemetry.price_source)  # 0.00000570 model

    # a model without prices of its own is priced from genai-prices' table, at the run's time
    run = client.run("summary", variables={"text": "quarterly numbers"}, model_name="gpt-4o-mini")
    print(run.telemetry.price_source)  # genai-prices 0.2.5

    # analytics sum the cost; group_by="model" (or "version") breaks each prompt down
    for row in client.analytics(group_by="model").prompts:
        if row.name == "summary":
            for group in row.groups or []:
                assert group.model is not None
                print(group.model.name, group.executions, f"{group.cost_usd:.8f}")

    client.put_model("my-finetune", is_active=False)  # retired: new runs are refused
    try:
        client.run("summary", variables={"text": "more"}, model_name="my-finetune")
    except UnknownModelError as err:
        print(err.code)  # unknown_model
