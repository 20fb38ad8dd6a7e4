"""Composition root: settings, ledger, runner, CLI, and (later) the FastAPI service."""
