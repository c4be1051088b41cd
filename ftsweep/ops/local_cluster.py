"""A Ray cluster of several nodes on one machine: what the cluster tests and `make cluster-demo` run.

Every node is its own `ray start --block` process with its own resources and its own scratch
folder (Ray's temp dir, and TMPDIR for what its trials write). Where this process may create
network namespaces (root, with `ip netns`), each node runs in a namespace of its own, joined to
the others by a bridge in a hub namespace: nodes have addresses of their own, and no packet
reaches any interface of the machine itself. Services (the tracking server, the object store)
run in the hub, the sweep's client in a namespace of its own. Without namespaces everything
shares this machine's network, and Ray advertises the machine's own address.

Ray runs with token authentication: one token file (0600) for the cluster, named in every
node's and the client's environment (`RAY_AUTH_MODE=token`, `RAY_AUTH_TOKEN_PATH`).

A node is ended by pid, never with `ray stop` (which stops every Ray process on the machine):
`kill` SIGKILLs its raylet and workers at once, as when a machine is lost; `stop` sends SIGTERM
to its process group, then SIGKILL.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Addresses inside the cluster's own namespaces: the benchmarking range (RFC 2544), which no
# network of the machine uses. No namespace has a route beyond its bridge.
SUBNET = ipaddress.ip_network("198.18.0.0/24")
HUB_ADDRESS = str(SUBNET[1])
RAY_PORT = 6379
ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "USER", "LOGNAME", "FTSWEEP_CACHE", "HF_HOME")


class ClusterError(RuntimeError):
    """The local cluster could not be started; the message says why."""


def _ip(args: str) -> None:
    """`ip ARGS` (words split on spaces), raising ClusterError with what it said."""
    cmd = ["ip", *args.split()]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)}: {(result.stderr or result.stdout).strip()}")


def namespaces_available() -> bool:
    """Whether this process may create network namespaces (root and the `ip` tool)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- network namespaces --------------------------------------------------------------------------


@dataclass
class Namespace:
    """A network namespace of this cluster, or None's stand-in (`name=None`: this machine's own
    network). `address` is its address on the cluster's bridge (127.0.0.1 without one)."""

    name: str | None
    address: str = "127.0.0.1"

    @classmethod
    def create(cls, name: str, address: str = "127.0.0.1") -> Namespace:
        """A new namespace with its loopback up (and nothing else yet)."""
        _ip(f"netns add {name}")
        namespace = cls(name, address)
        try:
            _ip(f"-n {name} link set lo up")
        except BaseException:
            namespace.delete()
            raise
        return namespace

    def wrap(self, cmd: list[str]) -> list[str]:
        """`cmd` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *cmd] if self.name else list(cmd)

    def pids(self) -> list[int]:
        """Every process in the namespace (none without one)."""
        if not self.name:
            return []
        result = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(p) for p in result.stdout.split()]

    def kill_all(self) -> None:
        for pid in self.pids():
            _kill(pid, signal.SIGKILL)

    def delete(self) -> None:
        if self.name:
            self.kill_all()
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)


class Network:
    """A hub namespace holding a bridge, and one namespace per member attached to it.

    Each member namespace has its loopback and one veth into the bridge, with an address of
    `SUBNET`; no default route, so nothing can leave it for anywhere but the bridge.
    """

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.hub = Namespace.create(f"{prefix}-hub", HUB_ADDRESS)
        self.members: list[Namespace] = []
        try:
            _ip(f"-n {self.hub.name} link add br0 type bridge")
            _ip(f"-n {self.hub.name} addr add {HUB_ADDRESS}/24 dev br0")
            _ip(f"-n {self.hub.name} link set br0 up")
        except BaseException:
            self.hub.delete()
            raise

    def add(self, name: str) -> Namespace:
        """A new member namespace, `PREFIX-name`, with the next address of the subnet."""
        index = len(self.members) + 2
        member = Namespace.create(f"{self.prefix}-{name}", str(SUBNET[index]))
        self.members.append(member)
        hub, veth = self.hub.name, f"v{index}"
        _ip(f"-n {hub} link add {veth} type veth peer eth0 netns {member.name}")
        _ip(f"-n {hub} link set {veth} master br0")
        _ip(f"-n {hub} link set {veth} up")
        _ip(f"-n {member.name} addr add {member.address}/24 dev eth0")
        _ip(f"-n {member.name} link set eth0 up")
        return member

    def delete(self) -> None:
        for member in reversed(self.members):
            member.delete()
        self.hub.delete()


# --- processes --------------------------------------------------------------------------------


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def end_process_group(process: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM to the group `process` leads, SIGKILL to what is left after `grace_s`."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def make_token(path: Path) -> Path:
    """A Ray token (256 random bits, hex, as Ray writes its own), mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path


# --- Ray nodes ---------------------------------------------------------------------------------


@dataclass
class RayNode:
    """One `ray start --block` process: the head (`head_address` None) or a worker."""

    name: str
    scratch: Path  # this node's own folder: Ray's temp dir and the TMPDIR of its processes
    namespace: Namespace
    env: dict[str, str]
    num_cpus: int = 1
    resources: dict[str, float] = field(default_factory=dict)
    head_address: str | None = None
    port: int = RAY_PORT
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """The cluster's address (the head's GCS) as this node knows it."""
        return self.head_address or f"{self.namespace.address}:{self.port}"

    def start(self) -> RayNode:
        import json

        (self.scratch / "tmp").mkdir(parents=True, exist_ok=True)
        ray = str(Path(sys.executable).with_name("ray"))
        cmd = [
            ray,
            "start",
            "--block",
            f"--node-ip-address={self.namespace.address}",
            f"--num-cpus={self.num_cpus}",
            f"--temp-dir={self.scratch / 'ray'}",
            "--object-store-memory=150000000",  # plasma in /dev/shm, shared by every node here
            "--disable-usage-stats",
        ]
        if self.resources:
            cmd.append(f"--resources={json.dumps(self.resources)}")
        if self.head_address is None:
            cmd += ["--head", f"--port={self.port}", "--include-dashboard=false"]
        else:
            cmd.append(f"--address={self.head_address}")
        env = self.env | {
            "TMPDIR": str(self.scratch / "tmp"),
            # Where Ray looks for "the cluster on this machine": this node's folder alone.
            "RAY_TMPDIR": str(self.scratch),
        }
        log = open(self.scratch / "ray-start.log", "ab")
        try:
            self.process = subprocess.Popen(
                self.namespace.wrap(cmd),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: `stop` ends this node alone
                cwd=self.scratch,
            )
        finally:
            log.close()
        return self

    def wait_started(self, timeout_s: float = 120) -> RayNode:
        """Until `ray start` says the node runs (a worker: registered with the head)."""
        deadline = time.monotonic() + timeout_s
        while "Ray runtime started" not in self.log_tail(100_000):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"Ray node {self.name} did not start:\n{self.log_tail()}")
            time.sleep(0.2)
        return self

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.scratch / "ray-start.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The node's processes: `ray start`, its raylet and the raylet's workers."""
        if self.process is None:
            return []
        own = {self.process.pid, *_descendants(self.process.pid), *self.namespace.pids()}
        return sorted(own)

    def kill(self) -> list[int]:
        """SIGKILL every process of the node at once (a lost machine); returns their pids."""
        pids = self.pids()
        for pid in pids:
            _kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()
        return pids

    def stop(self) -> None:
        if self.process is None:
            return
        leftovers = self.pids()
        end_process_group(self.process, grace_s=3)
        for pid in leftovers:  # workers Ray put in process groups of their own
            _kill(pid, signal.SIGKILL)


def base_env(token: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """What every process of the cluster starts with: this machine's basics, Ray's token, and
    `extra`; nothing else of this process's environment (a RAY_ADDRESS above all)."""
    env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    return env | (extra or {})
