"""The provider simulator: a local server that speaks the OpenAI, Azure OpenAI, Anthropic and
Gemini wire formats, with configurable latency and faults, and stats and a ledger for tests.

    from batchgate.simulator import start_in_thread
    with start_in_thread({"default": {"latency_ms": 20}}) as sim:
        client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key="sk-test")

Modules: `app` (routes, the request path), `behaviour` (config, directives, fault decisions),
`openai_wire` / `responses_wire` / `anthropic_wire` / `gemini_wire` (each vendor's validation
and bodies), `content` (deterministic answers), `stats` (counters and ledger), `server`
(foreground and thread runners).
"""

from batchgate.simulator.app import create_app
from batchgate.simulator.behaviour import Behaviour, ModelBehaviour, load_behaviour
from batchgate.simulator.server import RunningSimulator, run, start_in_thread

__all__ = [
    "Behaviour",
    "ModelBehaviour",
    "RunningSimulator",
    "create_app",
    "load_behaviour",
    "run",
    "start_in_thread",
]
