"""The model library (litellm: seconds to import) is loaded in a worker thread, before a run's
first price lookup or call could load it on the event loop that answers the API meanwhile."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import loops.litellm_model
from app.executor import Executor
from app.runner import Runner
from app.settings import Settings
from loops.litellm_model import LiteLLMModel
from loops.model import ModelRequest, ModelResponse
from loops.testing import FunctionModel, reply
from loops.usage import Price
from tests.app.test_executor import FAST, setup, submit, wait_for


async def test_litellm_is_imported_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []

    def fake_import() -> Any:
        threads.append(threading.current_thread())
        loops.litellm_model._LOADED.append(object())
        return loops.litellm_model._LOADED[0]

    monkeypatch.setattr(loops.litellm_model, "_LOADED", [])
    monkeypatch.setattr(loops.litellm_model, "_litellm", fake_import)
    model = LiteLLMModel()

    await model.load()
    await model.load()  # loaded once

    assert len(threads) == 1
    assert threads[0] is not threading.main_thread()


class LoadingModel(FunctionModel):
    """Records the order of its loading, price lookups and calls."""

    def __init__(self) -> None:
        super().__init__(lambda _request: reply("done"))
        self.events: list[str] = []

    async def load(self) -> None:
        self.events.append("load")

    def price(self, model: str) -> Price | None:
        self.events.append("price")
        return None

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.events.append("call")
        return await super().complete(request)


async def test_a_run_loads_the_model_before_its_first_price_or_call(tmp_path: Path) -> None:
    model = LoadingModel()
    _, ledger = setup(tmp_path, model.function)
    runner = Runner(settings=Settings(data_dir=tmp_path / "var"), ledger=ledger, model=model)
    run_id = submit(runner, tmp_path, "say done")
    executor = Executor(runner=runner, config=FAST)
    await executor.start()
    try:
        await wait_for(ledger, [run_id], {"passed"})
    finally:
        await executor.shutdown()

    assert model.events[0] == "load"
    assert {"price", "call"} <= set(model.events[1:])
