"""`rediss://`: one TLS-only Redis as both the Celery broker and the coordination store, the CA
given in the URL (`?ssl_cert_reqs=required&ssl_ca_certs=PATH`, as redis-py and kombu read it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from batchgate.coordination import connect
from batchgate.names import leader_key, slots_key
from batchgate.routing.epoch import begin_epoch
from tests.e2e.harness import System, chat_lines, sim_config, sim_ledger, write_jsonl
from tests.tls_redis import tls_redis

pytestmark = pytest.mark.e2e


def test_a_batch_runs_with_broker_and_coordination_on_tls_redis(
    make_simulator, tmp_path: Path, database_url: str
) -> None:
    with tls_redis(tmp_path / "tls") as tls:
        # Only TLS, and only with the CA: plaintext and an unverifiable server are refused.
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=tls.port, socket_timeout=5).ping()
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            redis.Redis.from_url(f"rediss://127.0.0.1:{tls.port}/0?ssl_cert_reqs=required").ping()
        begin_epoch(tls.url)
        sim = make_simulator({"default": {"latency_ms": 20}})
        config = sim_config(sim.base_url, {"m": "openai/gpt-4o-mini"})
        config["batchgate_settings"] = {"vendors": {"openai": {"max_concurrency": 4}}}
        system = System(tmp_path / "sys", config, tls.url, database_url)
        try:
            system.start()
            lines = chat_lines(60, "m")
            batch = system.submit(write_jsonl(tmp_path / "in.jsonl", lines))
            done = system.wait(batch["id"], timeout=120)
            assert done["status"] == "completed", system.logs()
            out = system.download(done["output_file_id"], "out.jsonl")
            assert [x["custom_id"] for x in out] == [x["custom_id"] for x in lines]
            assert len(sim_ledger(sim.base_url)) == 60
            assert sim.stats()["total"]["peak_in_flight"] <= 4
            # Coordination went through it too: the reconciler leads by a lock there, and the
            # workers' slots came from there (the set is gone once idle; the epoch stays).
            client = connect(tls.url)
            assert client.get(leader_key("reconciler")) is not None
            assert client.exists("bg:slots-epoch") and not client.exists(slots_key("openai"))
            client.close()
        finally:
            system.stop()
