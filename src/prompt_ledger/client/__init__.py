"""Python client for the PromptLedger API (SPEC §8): sync and async, typed results and errors.

Example::

    from prompt_ledger.client import PromptLedger

    class Prompts:
        WELCOME = "Hello {{ name }}!"

    with PromptLedger() as client:  # PROMPTLEDGER_URL, PROMPTLEDGER_API_KEY
        client.register_code(Prompts)
        client.execute("Prompts.WELCOME", variables={"name": "Ada"}, model_name="gpt-4o-mini")

:class:`PromptLedger` blocks; :class:`AsyncPromptLedger` has the same methods as coroutines.
Both run one implementation of every operation (``_core.py``) and differ only in how they
send requests and sleep.
"""

from prompt_ledger.client.aio import AsyncPromptLedger
from prompt_ledger.client.cache import CachedPrompt
from prompt_ledger.client.errors import (
    BadRequestError,
    ConflictError,
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    InvalidTemplateError,
    ModeMismatchError,
    NotCancelableError,
    NotFoundError,
    PayloadTooLargeError,
    PromptLedgerClientError,
    PromptTooLargeError,
    RenderError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    UnauthorizedError,
    UnavailableError,
    UnexpectedResponseError,
    UnknownModelError,
    UnprocessableError,
    ValidationError,
    WaitTimeoutError,
)
from prompt_ledger.client.models import (
    Analytics,
    Diff,
    DiffChanges,
    Execution,
    ExecutionError,
    GroupStats,
    Health,
    History,
    HistoryVersion,
    Label,
    LabelTarget,
    ModeCounts,
    Model,
    ModelRef,
    ModeStats,
    Page,
    Pricing,
    Prompt,
    PromptEvent,
    PromptRef,
    PromptStats,
    PromptSummary,
    RegisteredPrompt,
    SavedPrompt,
    SplitEntry,
    Stats,
    Submission,
    Telemetry,
    Version,
    VersionRef,
    VersionSummary,
)
from prompt_ledger.client.registration import (
    ChatPrompt,
    CodePrompt,
    TextPrompt,
    collect_prompts,
    template_hash,
)
from prompt_ledger.client.sync import PromptLedger

__all__ = [
    "Analytics",
    "AsyncPromptLedger",
    "BadRequestError",
    "CachedPrompt",
    "ChatPrompt",
    "CodePrompt",
    "ConflictError",
    "Diff",
    "DiffChanges",
    "Execution",
    "ExecutionError",
    "GroupStats",
    "Health",
    "History",
    "HistoryVersion",
    "IdempotencyKeyInUseError",
    "IdempotencyKeyReusedError",
    "InvalidTemplateError",
    "Label",
    "LabelTarget",
    "ModeCounts",
    "ModeMismatchError",
    "ModeStats",
    "Model",
    "ModelRef",
    "NotCancelableError",
    "NotFoundError",
    "Page",
    "PayloadTooLargeError",
    "Pricing",
    "Prompt",
    "PromptEvent",
    "PromptLedger",
    "PromptLedgerClientError",
    "PromptRef",
    "PromptStats",
    "PromptSummary",
    "PromptTooLargeError",
    "RegisteredPrompt",
    "RenderError",
    "RequestTimeoutError",
    "SavedPrompt",
    "ServerError",
    "SplitEntry",
    "Stats",
    "Submission",
    "Telemetry",
    "TextPrompt",
    "TransportError",
    "UnauthorizedError",
    "UnavailableError",
    "UnexpectedResponseError",
    "UnknownModelError",
    "UnprocessableError",
    "ValidationError",
    "Version",
    "VersionRef",
    "VersionSummary",
    "WaitTimeoutError",
    "collect_prompts",
    "template_hash",
]
