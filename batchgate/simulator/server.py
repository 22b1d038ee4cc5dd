"""Running the simulator: in the foreground (`run`, for `batchgate simulate` and the demo) or on
a background thread with its own event loop (`start_in_thread`, for tests and benchmarks).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from batchgate.simulator.app import SIMULATOR_KEY, Simulator, create_app
from batchgate.simulator.behaviour import Behaviour, load_behaviour

_SHUTDOWN_TIMEOUT = 2.0  # hanging requests are woken at shutdown; do not wait a minute for them


def _as_behaviour(behaviour: Behaviour | Mapping[str, Any] | str | Path | None) -> Behaviour:
    if behaviour is None or isinstance(behaviour, Behaviour):
        return behaviour or Behaviour()
    if isinstance(behaviour, Mapping):
        return Behaviour.from_dict(behaviour)
    return load_behaviour(behaviour)


async def _start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    # handler_cancellation: a client that gives up cancels its handler, so in-flight counts and
    # the ledger see it at once. No access log: the simulator must not log per request.
    runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    return runner, runner.addresses[0][1]


def run(host: str = "127.0.0.1", port: int = 8099, behaviour_path: str | None = None) -> None:
    """Serve until SIGINT/SIGTERM. Prints one line once listening."""
    behaviour = load_behaviour(behaviour_path)

    async def main() -> None:
        runner, bound = await _start(create_app(behaviour), host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"simulator listening on http://{host}:{bound}", flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


class RunningSimulator:
    """A simulator serving on a background thread. Use as a context manager or call `stop()`."""

    def __init__(self, host: str, port: int, loop: asyncio.AbstractEventLoop,
                 runner: web.AppRunner, thread: threading.Thread) -> None:  # fmt: skip
        self.host = host
        self.port = port
        self.base_url = f"http://{host}:{port}"
        self._loop = loop
        self._runner = runner
        self._thread = thread

    @property
    def simulator(self) -> Simulator:
        return self._runner.app[SIMULATOR_KEY]

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def stats(self) -> dict[str, Any]:
        """Same JSON shape as `GET /_sim/stats`."""

        async def snapshot() -> dict[str, Any]:
            return self.simulator.stats.snapshot()

        return self._call(snapshot())

    def ledger(self, **filters: Any) -> list[dict[str, Any]]:
        """The `entries` of `GET /_sim/ledger` (filters: model, prompt_sha256, since, limit)."""

        async def entries() -> list[dict[str, Any]]:
            return self.simulator.ledger.entries(**filters)

        return self._call(entries())

    def reset(self) -> None:
        async def reset() -> None:
            self.simulator.reset()

        self._call(reset())

    def set_behaviour(self, behaviour: Behaviour | Mapping[str, Any] | str | Path | None) -> None:
        parsed = _as_behaviour(behaviour)

        async def swap() -> None:
            self.simulator.set_behaviour(parsed)

        self._call(swap())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self._runner.cleanup())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    behaviour: Behaviour | Mapping[str, Any] | str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> RunningSimulator:
    """Start on a daemon thread; `port=0` picks a free port. Returns once it accepts connections."""
    app = create_app(_as_behaviour(behaviour))
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            ready["runner"], ready["port"] = loop.run_until_complete(_start(app, host, port))
        except BaseException as exc:  # reported to the caller below
            ready["error"] = exc
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name="batchgate-simulator", daemon=True)
    thread.start()
    started.wait()
    if "error" in ready:
        raise ready["error"]
    return RunningSimulator(host, ready["port"], loop, ready["runner"], thread)
