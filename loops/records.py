"""What the engine hands to the ledger, and the port it hands it through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from loops.checking import Verdict
from loops.usage import Usage


@dataclass(frozen=True, kw_only=True)
class ToolCallRecord:
    name: str
    arguments: str
    result: str  # what the model was shown, capped
    is_error: bool = False
    duration_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class TurnRecord:
    """One maker turn and the checker's verdict on it.

    A turn cut short by a brake or a cancel is recorded too, with `verdict=None`, so its cost is
    never lost and it is never executed again on resume.
    """

    run_id: str
    number: int  # 1-based
    maker_summary: str
    tool_calls: tuple[ToolCallRecord, ...] = ()
    verdict: Verdict | None = None
    usage: Usage = field(default_factory=Usage)  # this turn's own consumption
    steps: int = 0
    started_at: float = 0.0  # unix time
    ended_at: float = 0.0
    elapsed_s: float = 0.0  # run wall time consumed up to the end of this turn
    consecutive_passes: int = 0  # after this turn
    findings: str = ""  # the findings handed to the next turn
    interrupted: str | None = None  # why the turn was cut short, if it was


class RunStore(Protocol):
    async def turn_completed(self, record: TurnRecord) -> None:
        """Durably record a turn; return only once it is committed."""
        ...
