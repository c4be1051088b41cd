"""A Ray cluster of several nodes on one machine: what the cluster tests and `make cluster-demo` run.

Every node is its own `ray start --block` process with its own resources and its own scratch
folder (Ray's temp dir, and TMPDIR for what its trials write). Where this process may create
network namespaces (root, with `ip netns`), each node runs in a namespace of its own, joined to
the others by a bridge in a hub namespace: nodes have addresses of their own, and no packet
reaches any interface of the machine itself. Services (the tracking server, the object store)
run in the hub; the sweep's client runs beside the head (a Ray driver needs a node of the
cluster on its machine, as on a real cluster's head). Without namespaces everything shares
this machine's network, and Ray advertises the machine's own address.

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
    """Whether this process may create network namespaces (root and the `ip` tool), unless
    FTSWEEP_CLUSTER_NAMESPACES=0 asks for every node on this machine's loopback instead."""
    if os.environ.get("FTSWEEP_CLUSTER_NAMESPACES", "1") == "0":
        return False
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


# --- the whole cluster: services, nodes, a client --------------------------------------------

BUCKET = "ftsweep"
S3_ENV = {
    # moto's server takes any credentials; a real store needs real ones, nowhere else but here
    "AWS_ACCESS_KEY_ID": "ftsweep-test",
    "AWS_SECRET_ACCESS_KEY": "ftsweep-test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata look-ups for credentials
}
_START_POSTGRES = """
import sys
from pathlib import Path
from ftsweep.ops.postgres import LocalPostgres
LocalPostgres(Path(sys.argv[1]), port=int(sys.argv[2])).start()
"""
_MAKE_BUCKET = """
import os, sys
from pyarrow import fs
s3 = fs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], allow_bucket_creation=True)
s3.create_dir(sys.argv[1])
"""


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _wait_for_http(namespace: Namespace, url: str, env: dict, timeout_s: float = 120) -> None:
    """Until `url` answers from inside `namespace` (any HTTP status)."""
    probe = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n    urllib.request.urlopen(sys.argv[1], timeout=5)\n"
        "except urllib.error.HTTPError:\n    pass\n"
    )
    deadline = time.monotonic() + timeout_s
    while True:
        result = subprocess.run(
            namespace.wrap(_python("-c", probe, url)), env=env, capture_output=True, text=True
        )
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{url} did not answer within {timeout_s:g} s: {result.stderr[-500:]}"
            )
        time.sleep(0.5)


class LocalCluster:
    """A Ray head and worker nodes, an MLflow tracking server over PostgreSQL and an S3 server,
    all on this machine (see the module's docstring); the sweep's client runs beside the head,
    as on a cluster's head node, and reaches the cluster through RAY_ADDRESS.

    Trial state that must outlive a node goes to the S3 server (`storage_uri`); every node and
    the client log to the tracking server (`tracking_uri`). `stop` ends everything it started.
    """

    def __init__(self, root: Path, workers: int = 2, worker_cpus: int = 1, head_cpus: int = 0):
        self.root = Path(root)
        self.worker_cpus = worker_cpus
        self.head_cpus = head_cpus
        self.initial_workers = workers
        self.isolated = namespaces_available()
        self.network: Network | None = None
        self.nodes: list[RayNode] = []
        self.processes: dict[str, subprocess.Popen] = {}  # services, by name
        self.postgres_dir: Path | None = None
        self.s3_port = 9000  # in the hub; free ports instead where there are no namespaces
        self.tracking_port = 5000

    # where things are ----------------------------------------------------------------------

    @property
    def hub(self) -> Namespace:
        return self.network.hub if self.network else Namespace(None)

    @property
    def head(self) -> RayNode:
        return self.nodes[0]

    @property
    def workers(self) -> list[RayNode]:
        return self.nodes[1:]

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.hub.address}:{self.tracking_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.hub.address}:{self.s3_port}"

    @property
    def storage_uri(self) -> str:
        return f"s3://{BUCKET}/sweeps"

    def node_at(self, address: str) -> RayNode | None:
        """The node a run's `ftsweep.node` tag (IP/NODE) names, by its address (None where
        several nodes share it: without namespaces every node is 127.0.0.1)."""
        ip = address.split("/", 1)[0]
        matches = [n for n in self.nodes if n.namespace.address == ip]
        return matches[0] if len(matches) == 1 else None

    def _env(self, **extra: str) -> dict[str, str]:
        """What every process of the cluster runs with: Ray's token, the S3 endpoint and
        credentials, ftsweep's checkpoint key (the same on every node), DeepSpeed on CPU."""
        return base_env(
            self.root / "ray-token",
            S3_ENV
            | {
                "AWS_ENDPOINT_URL": self.s3_endpoint,  # read by pyarrow and boto3
                "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,  # read by MLflow's S3 store
                "FTSWEEP_SECRET_KEY": (self.root / "secret").read_text(),
                "DS_ACCELERATOR": "cpu",
                "RAY_worker_niceness": "0",
                # A lost node is declared dead after 3 missed health checks 2 s apart (Ray's
                # default waits about 30 s); a live one answers within 5 s even on a busy machine.
                "RAY_health_check_period_ms": "2000",
                "RAY_health_check_timeout_ms": "5000",
                "RAY_health_check_failure_threshold": "3",
                **extra,
            },
        )

    def _node_env(self) -> dict[str, str]:
        # gloo (a worker group's collectives on CPU) binds to the address of the host name,
        # which is the machine's own outside a namespace: name the namespace's interface.
        return self._env(**({"GLOO_SOCKET_IFNAME": "eth0"} if self.network else {}))

    def client_env(self) -> dict[str, str]:
        """The environment of a client that runs sweeps against the cluster."""
        return self._env(RAY_ADDRESS=self.head.address, TMPDIR=str(self.root / "client"))

    def client_command(self, args: list[str]) -> list[str]:
        """`args` run as a client: beside the head (a Ray driver needs a node of the cluster
        on its machine, here the head's namespace)."""
        return self.head.namespace.wrap(args)

    # starting and stopping ------------------------------------------------------------------

    def start(self) -> LocalCluster:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.root / "client").mkdir(mode=0o700, exist_ok=True)
        make_token(self.root / "ray-token")
        (self.root / "secret").write_text(secrets.token_hex(32))
        (self.root / "secret").chmod(0o600)
        try:
            if self.isolated:
                self.network = Network(f"ftsw{os.getpid()}")
            else:
                self.s3_port, self.tracking_port = free_port(), free_port()
            self._start_object_store()
            self._start_tracking_server()
            self.add_node("head", cpus=self.head_cpus)
            for _ in range(self.initial_workers):
                self.add_node()
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self, name: str | None = None, cpus: int | None = None) -> RayNode:
        """A new Ray node with a namespace and a scratch folder of its own (a worker unless it
        is the first), started and registered with the head."""
        name = name or f"w{len(self.nodes)}"
        namespace = self.network.add(name) if self.network else Namespace(None)
        head = self.nodes[0].address if self.nodes else None
        port = RAY_PORT if self.network or head else free_port()
        node = RayNode(
            name,
            self.root / name,
            namespace,
            self._node_env(),
            num_cpus=self.worker_cpus if cpus is None else cpus,
            head_address=head,
            port=port,
        )
        self.nodes.append(node)
        node.start().wait_started()
        return node

    def _start_object_store(self) -> None:
        log = open(self.root / "s3.log", "ab")
        with log:
            self.processes["s3"] = subprocess.Popen(
                self.hub.wrap(
                    _python("-m", "moto.server", "-H", self.hub.address, "-p", str(self.s3_port))
                ),
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for_http(self.hub, self.s3_endpoint, self._env())
        subprocess.run(
            self.hub.wrap(_python("-c", _MAKE_BUCKET, BUCKET)), env=self._env(), check=True
        )

    def _start_tracking_server(self) -> None:
        import tempfile

        from ftsweep.ops.postgres import LocalPostgres

        # Its own folder under /tmp: run as root, PostgreSQL runs as `postgres`, who must enter it.
        self.postgres_dir = Path(tempfile.mkdtemp(prefix="ftsw-pg-"))
        self.postgres_dir.chmod(0o755)
        pg_port = 5433 if self.network else free_port()
        subprocess.run(
            self.hub.wrap(
                _python("-c", _START_POSTGRES, str(self.postgres_dir / "pg"), str(pg_port))
            ),
            env=self._env(),
            check=True,
            capture_output=True,
        )
        self._postgres = LocalPostgres(self.postgres_dir / "pg", port=pg_port)
        self.start_tracking_server()

    def start_tracking_server(self) -> None:
        """`python -m ftsweep.ops.server` in the hub, artifacts in the object store."""
        from ftsweep.ops.postgres import ServerError
        from ftsweep.ops.service import check_user_can_serve, service_user

        cmd = _python(
            "-m",
            "ftsweep.ops.server",
            "--host",
            self.hub.address,
            "--port",
            str(self.tracking_port),
            "--artifacts",
            f"s3://{BUCKET}/mlartifacts",
            "--workers",
            "2",
        )
        try:
            check_user_can_serve(service_user(), [])
        except ServerError:
            cmd.append("--allow-root")  # this Python is where the service user cannot run it
        env = self._env(FTSWEEP_BACKEND_STORE_URI=self._postgres.uri)
        log = open(self.root / "tracking-server.log", "ab")
        with log:
            self.processes["tracking"] = subprocess.Popen(
                self.hub.wrap(cmd),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
            )
        _wait_for_http(self.hub, f"{self.tracking_uri}/health", self._env())

    def kill_tracking_server(self) -> None:
        """SIGKILL the tracking server and its workers (its database stays up): a crash."""
        process = self.processes.pop("tracking")
        for pid in [process.pid, *_descendants(process.pid)]:
            _kill(pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        for process in self.processes.values():
            end_process_group(process, grace_s=5)
        if getattr(self, "_postgres", None) is not None:
            try:
                self._postgres.stop()
            except Exception:
                pass  # the namespace's end below stops what is left
        if self.network is not None:
            self.network.delete()
        if self.postgres_dir is not None:
            shutil.rmtree(self.postgres_dir, ignore_errors=True)


# --- looking at the cluster from inside ----------------------------------------------------


class Probe:
    """A process beside the head that answers questions about the sweep's record and the object
    store (its addresses are reachable only from inside the cluster's namespaces).

    Each question is one JSON line on its stdin, each answer one JSON line on its stdout:
    `{"runs": EXPERIMENT}` -> every run (status, tags, metrics, the steps of train_loss);
    `{"ls": URI}` -> the paths of every file under URI.
    """

    def __init__(self, cluster: LocalCluster):
        self.process = subprocess.Popen(
            cluster.client_command(_python("-m", "ftsweep.ops.local_cluster", "probe")),
            env=cluster.client_env() | {"FTSWEEP_TRACKING_URI": cluster.tracking_uri},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def ask(self, question: dict):
        import json

        self.process.stdin.write(json.dumps(question) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise ClusterError("the probe exited")
        answer = json.loads(line)
        if "error" in answer:
            raise ClusterError(answer["error"])
        return answer["answer"]

    def runs(self, experiment: str) -> list[dict]:
        return self.ask({"runs": experiment})

    def ls(self, uri: str) -> list[str]:
        return self.ask({"ls": uri})

    def close(self) -> None:
        end_process_group(self.process, grace_s=2)


def _answer(question: dict, client):
    from pyarrow import fs

    from ftsweep.tracking.queries import experiment_runs

    if "runs" in question:
        runs = []
        for run in experiment_runs(client, question["runs"]):
            history = client.get_metric_history(run.info.run_id, "train_loss")
            runs.append(
                {
                    "run_id": run.info.run_id,
                    "name": run.info.run_name,
                    "status": run.info.status,
                    "tags": run.data.tags,
                    "metrics": run.data.metrics,
                    "train_loss_steps": sorted(m.step for m in history),
                }
            )
        return runs
    store, root = fs.FileSystem.from_uri(question["ls"])
    selector = fs.FileSelector(root, recursive=True, allow_not_found=True)
    return sorted(i.path for i in store.get_file_info(selector) if i.type == fs.FileType.File)


def _probe_main() -> int:
    import json

    from ftsweep.tracking.store import get_client

    client = get_client(os.environ["FTSWEEP_TRACKING_URI"])
    for line in sys.stdin:
        try:
            reply = {"answer": _answer(json.loads(line), client)}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)
    return 0


# --- make cluster-demo ------------------------------------------------------------------------


def demo(overrides: list[str], workers: int = 2) -> int:
    """Start a cluster, run a sweep on it from a client (`ftsweep sweep OVERRIDES` with
    RAY_ADDRESS, the tracking server and `storage=s3://...`), show where each trial ran, stop."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="ftsw-demo-", dir="/tmp"))
    cluster = LocalCluster(root, workers=workers)
    try:
        print(f"starting: a Ray head and {workers} worker nodes, PostgreSQL, MLflow, S3 ...")
        cluster.start()
        for node in cluster.nodes:
            where = node.namespace.name or "this machine's network"
            print(
                f"  {node.name}: {node.address if node is cluster.head else node.namespace.address}"
                f" ({node.num_cpus} CPU, {where}, scratch {node.scratch})"
            )
        print(f"  tracking server: {cluster.tracking_uri} (PostgreSQL, artifacts in S3)")
        print(f"  object store: {cluster.s3_endpoint}, storage={cluster.storage_uri}")
        args = [
            *overrides,
            f"results_dir={root / 'client' / 'results'}",
            f"tracking.uri={cluster.tracking_uri}",
            f"storage={cluster.storage_uri}",
        ]
        print(f"client: RAY_ADDRESS={cluster.head.address} ftsweep sweep {' '.join(args)}")
        sweep = subprocess.run(
            cluster.client_command(_python("-m", "ftsweep.cli", "sweep", *args)),
            env=cluster.client_env(),
        )
        probe = Probe(cluster)
        try:
            experiments = {a.split("=", 1)[1] for a in overrides if a.startswith("sweep.name=")}
            experiment = experiments.pop() if experiments else _sweep_name(overrides)
            print(f"\nruns of {experiment} (tag ftsweep.node: the Ray node of each attempt):")
            for run in probe.runs(experiment):
                node = cluster.node_at(run["tags"].get("ftsweep.node", ""))
                where = node.name if node else run["tags"].get("ftsweep.node", "-")
                print(f"  {run['name']:<40} {run['status']:<9} {where}")
            stored = probe.ls(cluster.storage_uri)
            print(f"object store: {len(stored)} files under {cluster.storage_uri}")
        finally:
            probe.close()
        return sweep.returncode
    finally:
        print("stopping the cluster")
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _sweep_name(overrides: list[str]) -> str:
    from ftsweep.config import compose

    return compose(overrides).sweep.name


if __name__ == "__main__":
    if sys.argv[1:] == ["probe"]:
        sys.exit(_probe_main())
    if sys.argv[1:2] == ["demo"]:
        sys.exit(demo(sys.argv[2:] or ["sweep=smoke"]))
    print("usage: python -m ftsweep.ops.local_cluster demo [OVERRIDES...]", file=sys.stderr)
    sys.exit(2)
