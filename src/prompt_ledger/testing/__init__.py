"""Test helpers shipped with the package, so the README demo and the benchmarks can use them.

The OpenAI-compatible stub server lives in :mod:`prompt_ledger.testing.stub_provider` (not
re-exported here, so that ``python -m prompt_ledger.testing.stub_provider`` runs it cleanly).
"""
