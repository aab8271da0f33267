"""Whole outputs with the run's variable parts spelled stably."""

from __future__ import annotations

import re
from pathlib import Path


def stable(text: str, home: Path) -> str:
    text = text.replace(str(home), "~")
    text = re.sub(r"blake3:[0-9a-f]{64}", "blake3:<digest>", text)
    text = re.sub(r"\b[0-9a-f]{64}\b", "<key>", text)
    text = re.sub(r"\b[0-9a-f]{32}-", "<k>-", text)
    text = re.sub(r"\b[0-9a-f]{12}\b", "<k12>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", "<date>", text)
    text = re.sub(r"built in \d+\.\d\d s", "built in <s> s", text)
    return text
