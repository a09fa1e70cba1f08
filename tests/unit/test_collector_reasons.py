"""Every dead-letter reason the collector can emit is documented for device vendors."""

from __future__ import annotations

import re
from pathlib import Path

from peakwatch.domain.reasons import Reason

INGEST_DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest.md"


def test_the_reason_table_of_docs_ingest_lists_exactly_the_reason_codes() -> None:
    text = INGEST_DOC.read_text(encoding="utf-8")
    table_rows = re.findall(r"^\| `([a-z_]+)` \| (?:message|element) \|", text, flags=re.MULTILINE)
    assert sorted(table_rows) == sorted(reason.value for reason in Reason)
