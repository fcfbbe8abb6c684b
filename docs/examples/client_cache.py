# docs/examples/client_cache.py
"""The client cache: resolve once, render locally, keep serving through an outage."""

from prompt_ledger.client import PromptLedger

with PromptLedger(timeout=5) as client:
    client.save_prompt("support.reply", "Dear {{ name }}, thanks for writing.")

    prompt = client.get_prompt("support.reply")  # label "active", fresh for 60 s
    print(prompt.version_number, prompt.render({"name": "Ada"}))
    # 1 Dear Ada, thanks for writing.

    pinned = client.get_prompt("support.reply", version=1)  # a version is cached for good
    print(pinned.checksum == prompt.checksum)  # True

    # Saving (or activating) through this client drops the cached label at once.
    client.save_prompt("support.reply", "Hello {{ name }}, thanks for writing!")
    print(client.get_prompt("support.reply").version_number)  # 2

# A server that cannot be reached: nothing cached, so the fallback is served.
with PromptLedger("http://127.0.0.1:1", timeout=1) as offline:
    prompt = offline.get_prompt("support.reply", fallback="Hi {{ name }}, we will reply soon.")
    print(prompt.is_fallback, prompt.render({"name": "Bo"}))
    # True Hi Bo, we will reply soon.
