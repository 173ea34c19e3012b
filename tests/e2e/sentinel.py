"""A Redis master, its replicas and the Sentinels that watch them, on free loopback ports.

``SentinelGroup.start(workdir, replicas=2, sentinels=3)`` starts the servers
(``redis-server``, Debian's binary; ``--sentinel`` makes a Sentinel of it), without
persistence, and returns once every replica is in sync and every Sentinel knows
the replicas and the other Sentinels (so a failover can be voted at once).
``kill_master()`` is a crash (``SIGKILL``); ``wait_for_new_master()`` returns the
address the Sentinels agree on. ``stop()`` ends every process it started.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

MASTER_NAME = "e2emaster"
# Sentinels call a master down after this long without an answer; failover follows.
DOWN_AFTER_MS = 1000
STARTUP_TIMEOUT = 20.0
SHUTDOWN_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Node:
    """One ``redis-server`` process (a data node or a Sentinel)."""

    role: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2.0, decode_responses=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=SHUTDOWN_TIMEOUT)


@dataclass
class SentinelGroup:
    master: Node
    replicas: list[Node]
    sentinels: list[Node]
    workdir: Path

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL the site is configured with (database 0)."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def nodes(self) -> list[Node]:
        return [self.master, *self.replicas, *self.sentinels]

    @classmethod
    def start(cls, workdir: Path, *, replicas: int = 2, sentinels: int = 3) -> SentinelGroup:
        executable = shutil.which("redis-server")
        assert executable is not None, "redis-server is not installed"
        workdir.mkdir(parents=True, exist_ok=True)
        started: list[Node] = []

        def launch(role: str, argv: list[str]) -> Node:
            port = _free_port()
            log_path = workdir / f"{role}-{port}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [executable, *argv, "--port", str(port), "--bind", "127.0.0.1"],
                    cwd=workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            node = Node(role, port, log_path, process)
            started.append(node)
            return node

        data = ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        try:
            master = launch("master", data)
            _wait_for(lambda: _pings(master), f"the master on {master.port}", started)
            copies = [
                launch(f"replica{n}", [*data, "--replicaof", "127.0.0.1", str(master.port)])
                for n in range(replicas)
            ]
            _wait_for(lambda: all(_in_sync(node) for node in copies), "the replicas to sync", started)
            watchers = []
            for n in range(sentinels):
                config = workdir / f"sentinel{n}.conf"
                # A Sentinel rewrites its configuration file as it learns: one each, writable.
                config.write_text(
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} {sentinels // 2 + 1}\n"
                    f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                    f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                    f"sentinel parallel-syncs {MASTER_NAME} {replicas}\n"
                )
                watchers.append(launch(f"sentinel{n}", [str(config), "--sentinel"]))
            group = cls(master, copies, watchers, workdir)
            _wait_for(group._sentinels_agree, "the Sentinels to know each other and the replicas", started)
            return group
        except BaseException:
            for node in started:
                node.stop()
            raise

    def _sentinels_agree(self) -> bool:
        for node in self.sentinels:
            try:
                info = node.client().sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            if (
                info.get("num-slaves") != len(self.replicas)
                or info.get("num-other-sentinels") != len(self.sentinels) - 1
            ):
                return False
        return True

    def master_address(self) -> set[tuple[str, int]]:
        """The master's address as each Sentinel that answers names it."""
        names = set()
        for node in self.sentinels:
            try:
                host, port = node.client().sentinel_get_master_addr_by_name(MASTER_NAME)
            except (redis.RedisError, TypeError):
                continue
            names.add((host, int(port)))
        return names

    def kill_master(self) -> None:
        """A crash: ``SIGKILL``, no chance to answer or flush anything."""
        self.master.process.kill()
        self.master.process.wait(timeout=SHUTDOWN_TIMEOUT)

    def fail_over(self) -> None:
        """``SENTINEL FAILOVER``: a replica is promoted while the master still runs (maintenance)."""
        assert self.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", MASTER_NAME)

    def connections_to(self, node: Node) -> list[str]:
        """Addresses of the clients ``node`` serves, but for Sentinels, replicas and this call."""
        client = node.client()
        own = client.client_id()
        return [
            c["addr"]
            for c in client.client_list(_type="normal")
            if int(c["id"]) != own and not c["name"].startswith("sentinel-")
        ]

    def wait_until_left(self, node: Node, timeout: float) -> None:
        """Returns once no client is connected to ``node``, which must still be a master then.

        After a manual failover the old master answers as a master until Sentinel demotes it
        (which closes every client's connection): clients that left it before did so themselves.
        """
        deadline = time.monotonic() + timeout
        while self.connections_to(node):
            if time.monotonic() > deadline:
                raise AssertionError(f"clients still on the old master after {timeout}s")
            time.sleep(0.02)
        role = node.client().execute_command("ROLE")[0]
        assert role == "master", f"Sentinel demoted the old master ({role}) before the clients left it"

    def wait_for_new_master(self, timeout: float) -> Node:
        """The replica every Sentinel names as the master now, once they do (within ``timeout``)."""
        old = ("127.0.0.1", self.master.port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            names = self.master_address()
            if len(names) == 1 and old not in names:
                [(_, port)] = names
                [promoted] = [node for node in self.replicas if node.port == port]
                if promoted.client().info("replication")["role"] == "master":
                    return promoted
            time.sleep(0.05)
        raise AssertionError(f"no failover within {timeout}s; the Sentinels name {self.master_address()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {node.role} ({node.port}) ---\n{node.log_path.read_text(errors='replace')[-3000:]}"
            for node in self.nodes()
        )

    def stop(self) -> None:
        for node in self.nodes():
            node.stop()


def _pings(node: Node) -> bool:
    try:
        return bool(node.client().ping())
    except redis.RedisError:
        return False


def _in_sync(node: Node) -> bool:
    try:
        return node.client().info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False


def _wait_for(ready: object, what: str, started: list[Node]) -> None:
    assert callable(ready)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready():
        dead = [node for node in started if not node.alive()]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"--- {n.role} ---\n{n.log_path.read_text(errors='replace')}" for n in started)
            raise AssertionError(f"waiting for {what}: {'exited' if dead else 'timed out'}\n{logs}")
        time.sleep(0.05)
