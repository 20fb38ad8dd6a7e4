"""Inbound adapters (GitHub, Slack, cron, API): verify, normalize to a LoopJob, reply."""
