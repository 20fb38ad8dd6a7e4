"""The loop core: jobs, workflows, engine, brakes, usage, model port, tools and workspace.

This package imports nothing else of Loopwright's; `checkers`, `triggers` and `app` build on it.
"""
