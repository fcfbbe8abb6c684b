"""Chat prompts and model config: messages, a placeholder for the conversation so far, the
model a version was written for, and a JSON Schema for its variables."""

from prompt_ledger.client import ChatPrompt, PromptLedger, ValidationError

SUPPORT = ChatPrompt(
    [
        {"role": "system", "content": "You answer questions about {{ product }} in one line."},
        {"type": "placeholder", "name": "history"},  # the conversation, filled at run time
        {"role": "user", "content": "{{ question }}"},
    ],
    config={"model_name": "gpt-4o-mini", "params": {"temperature": 0.2, "max_new_tokens": 200}},
    variables_schema={
        "type": "object",
        "properties": {"question": {"type": "string", "minLength": 1}},
        "required": ["product", "question"],
    },
)


class Bot:  # code-first: a ChatPrompt (or a dict with "messages") registers like a str
    TRIAGE = ChatPrompt(
        [
            {"role": "developer", "content": "Classify the ticket; answer in JSON."},
            {"role": "user", "content": "{{ ticket }}"},
        ],
        config={"model_name": "gpt-4o-mini", "response_format": {"type": "json_object"}},
    )


with PromptLedger() as client:  # $PROMPTLEDGER_URL, $PROMPTLEDGER_API_KEY
    saved = client.save_prompt("support-chat", SUPPORT)
    print(saved.version.type, saved.version.variables)  # chat ['history', 'product', 'question']

    execution = client.run(  # no model_name: the version's config names one
        "support-chat",
        variables={
            "product": "PromptLedger",
            "question": "How do I roll back?",
            "history": [
                {"role": "user", "content": "Hi!"},
                {"role": "assistant", "content": "Hello! What can I do for you?"},
            ],
        },
        params={"temperature": 0.7},  # over the config's params
    )
    print(execution.model.name, execution.params)  # gpt-4o-mini, temperature 0.7, 200 tokens
    for message in execution.rendered_messages or []:  # exactly what the provider got
        print(f"  {message['role']}: {message['content']}")
    print(execution.response_text)

    try:  # variables are checked against the schema before anything is recorded
        client.run("support-chat", variables={"product": "PromptLedger", "question": ""})
    except ValidationError as err:
        print("rejected at", err.details["path"])  # $.question

    # content addressing covers messages, config and schema: a config-only change is a
    # new version, the same content the same version
    moved = client.save_prompt(
        "support-chat",
        messages=SUPPORT.messages,
        config={"model_name": "gpt-4o"},
        variables_schema=SUPPORT.variables_schema,
    )
    print(moved.version.version_number, moved.version.config)

    client.register_code(Bot)
    triage = client.execute("Bot.TRIAGE", variables={"ticket": "The export button is gone"})
    print(triage.status, triage.rendered_messages)
