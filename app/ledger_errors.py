"""The ledger's errors (re-exported by `app.ledger`).

    LedgerError              the ledger refused a request (bad cursor, bad status, ...)
    ├── StorageError         the database failed: unreachable, locked beyond the busy timeout,
    │   │                    not migrated. Carries the driver's message
    │   └── ConflictError    a write broke a unique or foreign key constraint
    ├── UnknownRunError      a write names a run that does not exist
    ├── AmbiguousRunError    a run id prefix matches several runs (carries the candidates)
    └── DuplicateTurnError   the run already has a turn with that number

SQLAlchemy and Alembic exceptions never leave the ledger unmapped.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger raises."""


class StorageError(LedgerError):
    pass


class UnknownRunError(LedgerError):
    pass


class AmbiguousRunError(LedgerError):
    def __init__(self, ref: str, candidates: list[str], *, more: bool = False) -> None:
        self.ref = ref
        self.candidates = tuple(candidates)
        count = f"more than {len(candidates)}" if more else str(len(candidates))
        super().__init__(f"run id prefix {ref!r} matches {count} runs: {', '.join(candidates)}")


class DuplicateTurnError(LedgerError):
    pass


class ConflictError(StorageError):
    """A write broke a unique or foreign key constraint; callers that expect it catch it."""
