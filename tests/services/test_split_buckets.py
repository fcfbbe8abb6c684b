"""Split bucketing (SPEC §9.2): the bucket of a subject and the entry that owns it."""

from __future__ import annotations

import pytest
from tests.api.test_labels import expected_bucket

from prompt_ledger.domain import entry_for_bucket, subject_bucket
from prompt_ledger.services.labels import SplitEntry

SPLIT = (SplitEntry(7, 60), SplitEntry(3, 30), SplitEntry(5, 10))


@pytest.mark.parametrize(
    ("bucket", "version"), [(0, 7), (59, 7), (60, 3), (89, 3), (90, 5), (99, 5)]
)
def test_entries_own_consecutive_ranges_in_listed_order(bucket: int, version: int) -> None:
    assert entry_for_bucket(SPLIT, bucket).version == version


@pytest.mark.parametrize(
    ("name", "label", "subject"),
    [("p", "ab", "user-1"), ("Prompts.WELCOME", "canary", "sessión-ü"), ("x", "y", "")],
)
def test_subject_bucket_is_the_spec_formula(name: str, label: str, subject: str) -> None:
    assert subject_bucket(name, label, subject) == expected_bucket(name, label, subject)


def test_known_value() -> None:
    """sha256(b"p\\nab\\nuser-1") begins fc84ac1cf13916bd: 0xfc84ac1cf13916bd % 100 == 53."""
    assert 0xFC84AC1CF13916BD % 100 == 53
    assert subject_bucket("p", "ab", "user-1") == 53
