"""Cell identity: every unit of work is named by a hash of its canonical content.

Equal content gives an equal id, so a re-run finds its finished cells, and a changed setting
gives new ids. Studies build their cells' canonical dicts (leaving out settings at a default
that older cells did not have, so old run directories keep their ids) and hash them here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_id(canonical: dict[str, Any]) -> str:
    """16 hex digits of the sha256 of a JSON-able mapping (keys sorted, compact)."""
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_digest(resolved: dict[str, Any]) -> str:
    """Hash of a resolved config mapping (what run.json records and re-runs compare)."""
    return content_id(resolved)
