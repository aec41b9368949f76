"""Where a benchmark script's results go: ``OUT.md`` (the report) and ``OUT.json`` (the numbers), written atomically,
the report printed too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ddm.workspace import atomic_write_text


def write_report(out: str, text: str, data: Any) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(out + ".md"), text)
    atomic_write_text(Path(out + ".json"), json.dumps(data, indent=1, default=float))
    print(text)
