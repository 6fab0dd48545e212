"""A stop that meets a hung close goes on: SIGTERM must not turn into SIGKILL (seen in CI: a
replica stopped under a fleet's traffic waited 30 s in its stop and was killed). The steps that
hold records still run to the end, and a slow stop says which step it is at and what each task
waits on, down to the innermost await."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from costwarden.app import runtime as runtime_module
from costwarden.app.runtime import Runtime
from costwarden.config import load_config
from tests.integration.setup_config import Upstreams, config_dict, write_config


def _runtime(tmp_path: Path) -> Runtime:
    path = write_config(tmp_path / "costwarden.yaml", config_dict(Upstreams(text="http://127.0.0.1:9"), tmp_path))
    return Runtime(load_config(path))


async def test_a_hung_close_is_cut_short_and_the_stop_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtime_module, "_STEP_LIMIT_S", 0.3, raising=False)
    runtime = _runtime(tmp_path)
    await runtime.start()
    hung = asyncio.Event()

    async def never_closes() -> None:
        hung.set()
        await asyncio.Event().wait()  # a Redis that never answers the close

    monkeypatch.setattr(runtime.lease, "close", never_closes)
    closed: list[str] = []
    store_close = runtime.store.close

    async def store_closes() -> None:
        closed.append("store")
        await store_close()

    monkeypatch.setattr(runtime.store, "close", store_closes)
    with caplog.at_level(logging.WARNING, logger=runtime_module.__name__):
        async with asyncio.timeout(10):  # before: waited for ever
            await runtime.stop()
    assert hung.is_set()
    assert closed == ["store"]  # the steps after the hung one ran
    assert any("the lease did not end within 0.3 s" in r.getMessage() for r in caplog.records), caplog.text


async def test_a_slow_stop_names_its_step_and_the_innermost_awaits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtime_module, "_STOP_WARN_S", 0.2)
    runtime = _runtime(tmp_path)
    await runtime.start()
    release = asyncio.Event()

    async def waits_on_the_database() -> None:
        await release.wait()

    async def slow_flush() -> None:  # the recorder's last flush is never cut: it holds records
        await waits_on_the_database()

    recorder_stop = runtime._recorder.stop if runtime._recorder else None
    assert recorder_stop is not None

    async def slow_recorder_stop() -> None:
        await slow_flush()
        await recorder_stop()

    monkeypatch.setattr(runtime._recorder, "stop", slow_recorder_stop)
    with caplog.at_level(logging.WARNING, logger=runtime_module.__name__):
        stopping = asyncio.create_task(runtime.stop(), name="the-stop")
        await asyncio.sleep(0.6)
        assert not stopping.done()  # not cut short
        release.set()
        await stopping
    text = caplog.text
    assert "at the recorder's last flush" in text, text
    assert "waits_on_the_database" in text, text  # the innermost await, not only the task's outer frame
