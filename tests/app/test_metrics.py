"""Request metrics from the ASGI middleware: route templates as labels, statuses as sent."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from loops.testing import FunctionModel, reply
from tests.app.api_support import api_app, serve


def requests_counted(text: str) -> dict[tuple[str, str, str], float]:
    counted = {}
    for family in text_string_to_metric_families(text):
        if family.name == "loopwright_http_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    counted[(labels["route"], labels["method"], labels["status"])] = sample.value
    return counted


async def test_requests_are_counted_by_route_template_method_and_status(tmp_path: Path) -> None:
    async with serve(api_app(tmp_path, FunctionModel(lambda _r: reply("done")))) as api:
        for run_id in ("0123456789abcdef", "fedcba9876543210"):
            assert (await api.client.get(f"/api/runs/{run_id}")).status_code == 404
        assert (await api.client.get("/no/such/page")).status_code == 404
        assert (await api.client.get("/api/runs", headers={"Authorization": ""})).status_code == 401
        assert (await api.client.delete("/healthz")).status_code == 405
        text = (await api.client.get("/metrics")).text

    counted = requests_counted(text)
    assert counted[("/api/runs/{run_id}", "GET", "404")] == 2
    assert counted[("unmatched", "GET", "404")] == 1
    assert counted[("/api/runs", "GET", "401")] == 1
    assert counted[("/healthz", "DELETE", "405")] == 1
    assert 'loopwright_http_request_seconds_count{method="GET",route="/api/runs/{run_id}"} 2.0' in (
        text
    )
