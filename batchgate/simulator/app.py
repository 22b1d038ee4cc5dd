"""Routes and wiring: one aiohttp app that serves every vendor's routes, plus `/_sim/` for tests.

A request goes: parse and validate (the vendor wire) → authenticate → count it in → ask the
`FaultPlanner` → wait the latency → answer, fail, hang, trickle or send broken JSON → record it
in the stats and the ledger. Nothing is logged per request; the hot path does one JSON decode, one
SHA-256 and one JSON encode.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from batchgate.simulator import (
    anthropic_batch_wire,
    anthropic_wire,
    azure_wire,
    gemini_batch_wire,
    gemini_wire,
    openai_batch_wire,
    openai_wire,
    responses_wire,
)
from batchgate.simulator.batch_jobs import BatchJobs, SimJob
from batchgate.simulator.behaviour import (
    Behaviour,
    Decision,
    Directives,
    FaultPlanner,
    parse_directives,
)
from batchgate.simulator.content import Answer, Call, PrefixCache, Reply, answer, dumps, spoil
from batchgate.simulator.stats import Ledger, Stats

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_NO_DIRECTIVES = Directives()


def _answer(call: Call, d: Decision, dirs: Directives) -> Answer:
    return spoil(answer(call, dirs.tool, dirs.tokens), call, d.bad_json)


def _chat(call: Call, d: Decision, dirs: Directives, filtered: bool) -> Reply:
    ans = _answer(call, d, dirs)
    return openai_wire.chat_reply(call, ans, int(d.latency_s * 1000), filtered)


def _embeddings(call: Call, d: Decision, dirs: Directives, filtered: bool) -> Reply:
    return openai_wire.embeddings_reply(call, d.behaviour.embedding_dims)


def _responses(call: Call, d: Decision, dirs: Directives, filtered: bool) -> Reply:
    return responses_wire.responses_reply(call, _answer(call, d, dirs), filtered)


def _completions(call: Call, d: Decision, dirs: Directives, filtered: bool) -> Reply:
    return responses_wire.completions_reply(call, answer(call, None, dirs.tokens))


def _moderations(call: Call, d: Decision, dirs: Directives, filtered: bool) -> Reply:
    return responses_wire.moderations_reply(call)


def _messages(call: Call, d: Decision, dirs: Directives, filtered: bool) -> Reply:
    return anthropic_wire.message_reply(call, _answer(call, d, dirs), filtered)


def _generate(call: Call, d: Decision, dirs: Directives, filtered: bool) -> Reply:
    return gemini_wire.generate_reply(call, _answer(call, d, dirs), filtered)


def _embed(call: Call, d: Decision, dirs: Directives, filtered: bool) -> Reply:
    return gemini_wire.embed_reply(call, d.behaviour.embedding_dims, batch=False)


def _batch_embed(call: Call, d: Decision, dirs: Directives, filtered: bool) -> Reply:
    return gemini_wire.embed_reply(call, d.behaviour.embedding_dims, batch=True)


@dataclass(frozen=True, slots=True)
class Route:
    vendor: str
    name: str  # Call.route
    path: str  # as recorded in the ledger
    parse: Callable[[Call, bytes], Call]
    render: Callable[[Call, Decision, Directives, bool], Reply]
    error: Callable[..., Reply]
    content_filter: str  # "body": a 200 that says so; "error": the vendor's 400; "none"


_ROUTES = {
    "openai.chat": Route(
        "openai", "chat", "/v1/chat/completions", openai_wire.parse_chat, _chat,
        openai_wire.error_reply, "body",
    ),
    "openai.embeddings": Route(
        "openai", "embeddings", "/v1/embeddings", openai_wire.parse_embeddings, _embeddings,
        openai_wire.error_reply, "none",
    ),
    "openai.responses": Route(
        "openai", "responses", "/v1/responses", responses_wire.parse_responses, _responses,
        openai_wire.error_reply, "body",
    ),
    "openai.completions": Route(
        "openai", "completions", "/v1/completions", responses_wire.parse_completions,
        _completions, openai_wire.error_reply, "none",
    ),
    "openai.moderations": Route(
        "openai", "moderations", "/v1/moderations", responses_wire.parse_moderations,
        _moderations, openai_wire.error_reply, "none",
    ),
    "azure.responses": Route(
        "azure", "responses", "/openai/v1/responses", responses_wire.parse_responses,
        _responses, openai_wire.error_reply, "error",
    ),
    "azure.completions": Route(
        "azure", "completions", "/openai/deployments/{deployment}/completions",
        responses_wire.parse_completions, _completions, openai_wire.error_reply, "none",
    ),
    "azure.chat": Route(
        "azure", "chat", "/openai/deployments/{deployment}/chat/completions",
        openai_wire.parse_chat, _chat, openai_wire.error_reply, "error",
    ),
    "azure.embeddings": Route(
        "azure", "embeddings", "/openai/deployments/{deployment}/embeddings",
        openai_wire.parse_embeddings, _embeddings, openai_wire.error_reply, "none",
    ),
    "anthropic.messages": Route(
        "anthropic", "messages", "/v1/messages", anthropic_wire.parse_messages, _messages,
        anthropic_wire.error_reply, "body",
    ),
    "gemini.generateContent": Route(
        "gemini", "generate", "/v1beta/models/{model}:generateContent",
        gemini_wire.parse_generate, _generate, gemini_wire.error_reply, "body",
    ),
    "gemini.embedContent": Route(
        "gemini", "embed", "/v1beta/models/{model}:embedContent", gemini_wire.parse_embed,
        _embed, gemini_wire.error_reply, "none",
    ),
    "gemini.batchEmbedContents": Route(
        "gemini", "batch_embed", "/v1beta/models/{model}:batchEmbedContents",
        gemini_wire.parse_batch_embed, _batch_embed, gemini_wire.error_reply, "none",
    ),
}  # fmt: skip


# (vendor, endpoint of a batch job) → the online route that answers its lines.
_BATCH_ROUTES = {
    ("openai", "/v1/chat/completions"): "openai.chat",
    ("openai", "/v1/embeddings"): "openai.embeddings",
    ("openai", "/v1/responses"): "openai.responses",
    ("openai", "/v1/completions"): "openai.completions",
    ("azure", "/chat/completions"): "azure.chat",
    ("azure", "/embeddings"): "azure.embeddings",
    ("anthropic", "/v1/messages"): "anthropic.messages",
    ("gemini", "generateContent"): "gemini.generateContent",
}


def _prompt_of(vendor: str, body: dict[str, Any]) -> str:
    name = {"anthropic": "anthropic.messages", "gemini": "gemini.generateContent"}.get(
        vendor, "openai.chat"
    )
    route = _ROUTES[name]
    return route.parse(Call(route.vendor, route.name, ""), dumps(body)).prompt


def _response(reply: Reply) -> web.Response:
    return web.Response(status=reply.status, body=reply.body, headers=reply.headers)


class Simulator:
    """The state behind one app: behaviour, fault planner, stats, ledger, prompt-prefix cache."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.planner = FaultPlanner(behaviour)
        self.stats = Stats()
        self.ledger = Ledger(behaviour.ledger_size)
        self.cache = PrefixCache()
        self.batch_jobs = BatchJobs()
        self.gemini_batches = gemini_batch_wire.GeminiBatchRoutes(self)
        self.closing = False

    def set_behaviour(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.planner = FaultPlanner(behaviour)
        if behaviour.ledger_size != self.ledger.capacity:
            self.ledger = Ledger(behaviour.ledger_size)

    def reset(self) -> None:
        self.stats.reset()
        self.ledger.clear()
        self.planner.reset()
        self.cache.clear()
        self.batch_jobs.clear()

    # -- vendor batch jobs -------------------------------------------------------------------

    def required_keys(self, vendor: str) -> frozenset[str] | None:
        return self.behaviour.required_keys(vendor)

    def advance(self, job: SimJob) -> None:
        """End a job whose time has come, answering its lines as the online routes would."""
        route = _ROUTES[_BATCH_ROUTES[(job.vendor, job.endpoint)]]
        path = {
            "anthropic": "/v1/messages/batches",
            "azure": "/openai/batches",
            "gemini": "/v1beta/batches",
        }.get(job.vendor, "/v1/batches")

        def render(body: dict[str, Any]) -> tuple[Call, Reply]:
            # Azure names the deployment in the body's model (its URL has none in a batch).
            model = str(body.get("model", "")) if job.vendor == "azure" else job.model
            call = route.parse(Call(route.vendor, route.name, model), dumps(body))
            if call.error is not None:
                return call, call.error
            dirs = parse_directives(call.prompt) or _NO_DIRECTIVES
            # The batch line's own fate (fail, expire) is drawn by the job; no online faults.
            mb = self.behaviour.for_model(call.model)
            d = Decision(None, 0.0, 0.0, mb)
            self.cache.apply(call)
            return call, route.render(call, d, dirs, False)

        def fail(call: Call) -> Reply:
            return route.error(call, "server_error", 500)

        def record(call: Call, status: int, fault: str | None) -> None:
            now = time.time()
            digest = hashlib.sha256(call.prompt.encode()).digest()
            self.ledger.record(call.model, call.vendor, path, status, fault, now, now, digest)

        self.batch_jobs.advance(job, self.behaviour, render, fail, record)
        if job.status == "ended" and not job.published:
            job.published = True
            if job.vendor in ("openai", "azure"):
                openai_batch_wire.write_results(self.batch_jobs, job)

    async def get_batch_jobs(self, request: web.Request) -> web.Response:
        """Tests: every job and the custom_ids of its lines, with each line's outcome."""
        out = []
        for job in self.batch_jobs.jobs.values():
            outcomes = [k for k, _ in job.outcomes]
            out.append(
                {
                    "id": job.id,
                    "vendor": job.vendor,
                    "status": job.status,
                    "cancelled": job.cancelled,
                    "created_at": job.created_at,
                    "ended_at": job.ended_at,
                    "metadata": job.metadata,
                    "custom_ids": [c for c, _ in job.lines],
                    "prompts": [
                        hashlib.sha256(_prompt_of(job.vendor, b).encode()).hexdigest()
                        for _, b in job.lines
                    ],
                    "outcomes": outcomes,
                }
            )
        return web.json_response({"jobs": out})

    # -- vendor entry points ---------------------------------------------------------------

    def openai_handler(self, route: Route) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            call = route.parse(Call(route.vendor, route.name, ""), raw)
            keys = self.behaviour.required_keys(route.vendor)
            auth = openai_wire.authenticate(call, request.headers, keys)
            return await self.serve(request, call, route, auth)

        return handle

    def azure_handler(self, route: Route) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            call = Call(route.vendor, route.name, request.match_info["deployment"])
            call.api_version = request.query.get("api-version", "")
            route.parse(call, raw)
            keys = self.behaviour.required_keys(route.vendor)
            auth = openai_wire.authenticate(call, request.headers, keys)
            if auth is None and not call.api_version:
                auth = azure_wire.missing_api_version()
            return await self.serve(request, call, route, auth)

        return handle

    def anthropic_handler(self, route: Route) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            call = route.parse(Call(route.vendor, route.name, ""), raw)
            keys = self.behaviour.required_keys(route.vendor)
            auth = anthropic_wire.authenticate(call, request.headers, keys)
            return await self.serve(request, call, route, auth)

        return handle

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        action = request.match_info["action"]
        if action == "batchGenerateContent":
            return await self.gemini_batches.create(request, request.match_info["model"])
        route = _ROUTES.get("gemini." + action)
        if route is None:
            return _response(gemini_wire.unknown_action(action))
        raw = await request.read()
        call = route.parse(Call(route.vendor, route.name, request.match_info["model"]), raw)
        keys = self.behaviour.required_keys(route.vendor)
        auth = gemini_wire.authenticate(call, request.headers, request.query, keys)
        return await self.serve(request, call, route, auth)

    # -- the common path ---------------------------------------------------------------------

    async def serve(
        self, request: web.Request, call: Call, route: Route, auth: Reply | None
    ) -> web.StreamResponse:
        t_start = time.time()
        digest = hashlib.sha256(call.prompt.encode()).digest()
        model_stats = self.stats.enter(call.model)
        outcome: list[Any] = [499, None]  # what a request the client gave up on records
        try:
            return await self._respond(request, call, route, auth, digest, outcome)
        finally:
            status, fault = outcome
            self.stats.leave(model_stats, status, fault)
            self.ledger.record(
                call.model,
                call.vendor,
                route.path,
                status,
                fault,
                t_start,
                time.time(),
                digest,
                client=request.remote or "",
            )

    async def _respond(
        self,
        request: web.Request,
        call: Call,
        route: Route,
        auth: Reply | None,
        digest: bytes,
        outcome: list[Any],
    ) -> web.StreamResponse:
        reply = auth or call.error
        if reply is None and not self.behaviour.is_known(call.model):
            reply = route.error(call, "not_found")
        if reply is not None:
            outcome[0] = reply.status
            return _response(reply)

        dirs = parse_directives(call.prompt) or _NO_DIRECTIVES
        d = self.planner.decide(call.model, digest, call.prompt_tokens, dirs)
        if d.latency_s > 0:
            await asyncio.sleep(d.latency_s)
        kind = d.fault.kind if d.fault is not None else None
        if kind == "content_filter" and route.content_filter == "none":
            kind = None  # embeddings have no content filter to trip
        outcome[1] = kind
        if kind == "timeout":
            outcome[0] = await self._hang(request, d.behaviour.hang_s)
            return web.Response(status=504)  # never reaches the client: the connection is gone
        filtered = kind == "content_filter" and route.content_filter == "body"
        if kind in (None, "trickle", "malformed") or filtered:
            self.cache.apply(call)
            reply = route.render(call, d, dirs, filtered)
        else:
            status = d.fault.status if d.fault is not None else None
            window = d.behaviour.context_window
            reply = route.error(call, kind, status, d.retry_after_s, window)
        if kind == "malformed":
            reply.body = reply.body[: max(1, len(reply.body) // 2)]
        elif kind == "trickle":
            return await self._trickle(request, reply, d.behaviour.trickle_interval_ms, outcome)
        outcome[0] = reply.status
        return _response(reply)

    async def _hang(self, request: web.Request, seconds: float) -> int:
        """Accept and never answer: 499 once the client gives up, 0 if we hang up first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.closing:
            transport = request.transport
            if transport is None or transport.is_closing():
                return 499
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.sleep(min(0.25, left))  # a fallback: a disconnect cancels us
        if request.transport is not None:
            request.transport.close()
        return 0

    async def _trickle(
        self, request: web.Request, reply: Reply, interval_ms: float, outcome: list[Any]
    ) -> web.StreamResponse:
        """Headers now, then the body one byte per interval."""
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        response.content_length = len(reply.body)
        try:
            await response.prepare(request)
            for i in range(len(reply.body)):
                if self.closing:
                    raise ConnectionResetError
                await response.write(reply.body[i : i + 1])
                await asyncio.sleep(interval_ms / 1000.0)
            await response.write_eof()
        except ConnectionError:
            outcome[0] = 499
            if request.transport is not None:
                request.transport.close()
            return response
        outcome[0] = reply.status
        return response

    # -- /_sim/ ------------------------------------------------------------------------------

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.snapshot())

    async def get_ledger(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            since = int(q.get("since", "0"))
            limit = int(q["limit"]) if "limit" in q else None
            entries = self.ledger.entries(
                model=q.get("model"),
                prompt_sha256=q.get("prompt_sha256"),
                since=since,
                limit=limit,
            )
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        body = {
            "total": self.ledger.total,
            "dropped": self.ledger.dropped,
            "capacity": self.ledger.capacity,
            "entries": entries,
        }
        return web.json_response(body)

    async def post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def get_behaviour(self, request: web.Request) -> web.Response:
        return web.json_response(self.behaviour.public_dict())

    async def post_behaviour(self, request: web.Request) -> web.Response:
        try:
            behaviour = Behaviour.from_dict(json.loads(await request.read() or b"{}"))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            return web.json_response({"error": str(exc)}, status=400)
        self.set_behaviour(behaviour)
        return web.json_response(behaviour.public_dict())

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})


async def _not_found(request: web.Request) -> web.Response:
    if request.path.startswith(("/v1beta/", "/v1/models/")):
        return _response(gemini_wire.unknown_action(request.path))
    message = f"Invalid URL ({request.method} {request.path})"
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    body["error"]["code"] = None
    return web.json_response(body, status=404)


SIMULATOR_KEY = web.AppKey("simulator", Simulator)


def create_app(behaviour: Behaviour | None = None) -> web.Application:
    """The simulator as an aiohttp application; `app[SIMULATOR_KEY]` is its state."""
    sim = Simulator(behaviour or Behaviour())
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SIMULATOR_KEY] = sim
    add = app.router.add_post
    add("/v1/chat/completions", sim.openai_handler(_ROUTES["openai.chat"]))
    add("/v1/embeddings", sim.openai_handler(_ROUTES["openai.embeddings"]))
    for name in ("responses", "completions", "moderations"):
        add(f"/v1/{name}", sim.openai_handler(_ROUTES[f"openai.{name}"]))
    # Azure's v1 surface: the deployment is the body's model, no api-version.
    add("/openai/v1/responses", sim.openai_handler(_ROUTES["azure.responses"]))
    azure = "/openai/deployments/{deployment}"
    add(azure + "/completions", sim.azure_handler(_ROUTES["azure.completions"]))
    add(azure + "/chat/completions", sim.azure_handler(_ROUTES["azure.chat"]))
    add(azure + "/embeddings", sim.azure_handler(_ROUTES["azure.embeddings"]))
    add("/v1/messages", sim.anthropic_handler(_ROUTES["anthropic.messages"]))
    openai_batch_wire.OpenAIBatchRoutes(sim).add_to(app)
    openai_batch_wire.OpenAIBatchRoutes(sim, "azure").add_to(app)
    anthropic_batch_wire.AnthropicBatchRoutes(sim).add_to(app)
    sim.gemini_batches.add_to(app)
    add("/v1beta/models/{model:[^/:]+}:{action}", sim.gemini)
    add("/v1/models/{model:[^/:]+}:{action}", sim.gemini)
    app.router.add_get("/_sim/stats", sim.get_stats)
    app.router.add_get("/_sim/ledger", sim.get_ledger)
    app.router.add_post("/_sim/reset", sim.post_reset)
    app.router.add_get("/_sim/behaviour", sim.get_behaviour)
    app.router.add_post("/_sim/behaviour", sim.post_behaviour)
    app.router.add_get("/_sim/health", sim.health)
    app.router.add_get("/_sim/batch_jobs", sim.get_batch_jobs)
    app.router.add_route("*", "/{tail:.*}", _not_found)

    async def on_shutdown(_app: web.Application) -> None:
        sim.closing = True  # wakes hanging and trickling requests

    app.on_shutdown.append(on_shutdown)
    return app
