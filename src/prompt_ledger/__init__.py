"""PromptLedger: a prompt registry and LLM execution ledger."""

__version__ = "0.1.0"
