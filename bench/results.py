"""Where the benches leave their figures: ``bench/results/<bench>-<UTC time>.json`` (git-ignored), named
on the terminal so a run can be found again."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console

from bench.children import ROOT

RESULTS = ROOT / "bench" / "results"


def save_results(bench: str, document: dict[str, Any], console: Console) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{bench}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(document, indent=2), encoding="utf-8")
    console.print(f"results: {out.relative_to(ROOT)}", markup=False)
