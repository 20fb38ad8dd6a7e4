"""Stuck detection: the same failing findings three turns in a row.

Findings are compared after masking what changes between otherwise identical failures
(durations, timestamps, addresses, temporary paths), so a loop repeating itself is caught even
when pytest reports a different run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from loops.checking import Verdict

STUCK_AFTER = 3

_VOLATILE = (
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "0x?"),
    (re.compile(r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?\S*"), "<time>"),
    (re.compile(r"\b\d+(\.\d+)?\s*(s|ms|sec|seconds)\b"), "<duration>"),
    (re.compile(r"/tmp/[^\s:'\"]+"), "<tmp>"),  # noqa: S108 - a pattern, not a file
    (re.compile(r"\bpid[ =:]*\d+", re.IGNORECASE), "pid ?"),
)


def normalize(findings: str) -> str:
    text = findings
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


@dataclass(kw_only=True)
class StuckDetector:
    recent: list[str] = field(default_factory=list)

    def observe(self, verdict: Verdict) -> bool:
        """Record a verdict; True when the last `STUCK_AFTER` failing findings are identical."""
        if verdict.passed:
            self.recent.clear()
            return False
        self.recent = [*self.recent, normalize(verdict.findings)][-STUCK_AFTER:]
        return len(self.recent) == STUCK_AFTER and len(set(self.recent)) == 1
