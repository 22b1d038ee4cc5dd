"""Hosts on one machine for tests of what crosses a network: network namespaces joined by veth
pairs to a bridge, each with its own address, processes started inside them, and a way to cut a
host's link. The root namespace reaches the hosts over the bridge; a TCP forwarder there makes
the machine's PostgreSQL and Redis (listening on loopback) reachable from every host.

Needs root, iproute2 (`ip netns`) and socat. Everything is named with a per-run prefix and
removed by `Network.close`, which also kills whatever the hosts still run.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.harness import wait_for


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if shutil.which("socat") is None:
        return "socat (the relay to PostgreSQL on loopback) is not installed"
    probe = f"bgprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _free_subnet() -> str:
    """A /24 under 10.231/16 no interface here uses yet: networks of concurrent runs (or of a
    run that was killed before it could clean up) must not share routes."""
    shown = subprocess.run(["ip", "-4", "-br", "addr"], capture_output=True, text=True).stdout
    used = {int(m) for m in re.findall(r"10\.231\.(\d+)\.", shown)}
    free = [n for n in range(1, 255) if n not in used]
    if not free:
        raise RuntimeError("no free 10.231.N.0/24 subnet for test hosts")
    return f"10.231.{random.choice(free)}"


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    subprocess.run(argv, check=True, capture_output=True, text=True)


@dataclass
class Host:
    name: str
    ns: str
    address: str
    link: str  # the root-namespace end of its veth pair
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Run a process inside this host (its own session, so it is killed as a group)."""
        out = open(log, "ab")  # noqa: SIM115 (the child owns it; closed when the Popen is reaped)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        """SIGKILL every process of the host, as a power cut would."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait()
        self.procs.clear()

    def cut(self) -> None:
        _ip("link", "set", self.link, "down")

    def restore(self) -> None:
        _ip("link", "set", self.link, "up")


class Network:
    """A bridge in the root namespace and hosts attached to it."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.bridge = f"bgbr{self.tag}"
        self.subnet = _free_subnet()
        self.gateway = f"{self.subnet}.1"  # the root namespace's address on the bridge
        self.hosts: list[Host] = []
        self.forwarders: list[TcpForwarder] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> Host:
        n = len(self.hosts) + 11
        ns, outer, inner = f"bg{self.tag}{name}", f"bgv{self.tag}{name}", f"bgi{self.tag}{name}"
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        _ip("link", "set", "lo", "up", ns=ns)
        _ip("addr", "add", f"{self.subnet}.{n}/24", "dev", inner, ns=ns)
        _ip("link", "set", inner, "up", ns=ns)
        _ip("route", "add", "default", "via", self.gateway, ns=ns)
        host = Host(name, ns, f"{self.subnet}.{n}", outer)
        self.hosts.append(host)
        return host

    def forward(self, port: int, target_port: int) -> str:
        """Serve `gateway:port` to every host, forwarding to 127.0.0.1:target_port."""
        fwd = TcpForwarder(self.gateway, port, "127.0.0.1", target_port)
        fwd.start()
        self.forwarders.append(fwd)
        return f"{self.gateway}:{port}"

    def close(self) -> None:
        for host in self.hosts:
            host.kill_all()
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True)
            subprocess.run(["ip", "link", "del", host.link], capture_output=True)
        for fwd in self.forwarders:
            fwd.stop()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class TcpForwarder:
    """A TCP relay in the root namespace: socat, one process per connection (PostgreSQL and
    Redis listen on loopback only; the hosts reach them through this, over the bridge). A relay
    in Python cost about as much CPU per line as the worker pool itself, and the benchmark runs
    on the same cores."""

    def __init__(self, host: str, port: int, target_host: str, target_port: int) -> None:
        self.addr = (host, port)
        self.target = (target_host, target_port)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        host, port = self.addr
        # The relay stands between the server and the host, so the server's own TCP keepalive
        # (which batchgate turns on: `store/db.py`) would only ever see the live relay. Do what
        # it would do: notice a host that went silent (keepalive, and TCP_USER_TIMEOUT = 18 for
        # unacknowledged data), and end that connection's relay, closing the server's side.
        # `nodelay` on both sockets: PostgreSQL's messages are small, and Nagle held each one
        # back for the peer's delayed ACK (the benchmark ran at half speed).
        listen = (
            f"TCP-LISTEN:{port},bind={host},fork,reuseaddr,"
            "nodelay,keepalive,keepidle=1,keepintvl=1,keepcnt=2,setsockopt-int=6:18:3000"
        )
        self.proc = subprocess.Popen(
            ["socat", listen, f"TCP:{self.target[0]}:{self.target[1]},nodelay"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = self.proc

        def listening() -> bool:  # socat says nothing when it is up
            if proc.poll() is not None:
                raise RuntimeError(f"socat on {host}:{port} exited ({proc.returncode})")
            try:
                socket.create_connection(self.addr, timeout=1).close()
            except OSError:
                return False
            return True

        wait_for(listening, 10, f"the forwarder on {host}:{port}", interval=0.05)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the listener and each connection's
            self.proc.wait()
