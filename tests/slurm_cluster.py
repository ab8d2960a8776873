"""A throwaway Slurm cluster on this machine for the Slurm tests: munged, slurmctld and one slurmd per node, all
with their files in one temporary folder, stopped and removed afterwards.  Needs root and Debian's slurm-wlm +
munge (.ci/setup-slurm installs them).

Two nodes on one host: Debian builds slurmd without --enable-multiple-slurmd (slurmd refuses a second instance
for another NodeName on the same address and port), so each node's slurmd runs in a network namespace of its
own (``ip netns``), on a bridge with the controller: node n1 at 10.77.0.11, n2 at 10.77.0.12, slurmctld on the
bridge's 10.77.0.1.  Their processes see the same files (one filesystem, as a cluster's shared one), but each node
has its own addresses and ports, so the two nodes' trainer ranks rendezvous over the bridge as over a network.

One cluster at a time per machine: the ports (16817, 16818) and the bridge's name are fixed.  A test killed
outright leaves its daemons running (their pids are in its folder); the next cluster removes only the network.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "ip", "nsenter")
BRIDGE, BRIDGE_ADDR, PREFIX = "ekslurm0", "10.77.0.1", "10.77.0"
NODE_IFNAME = "ekslurm"  # the interface every node's namespace has (GLOO_SOCKET_IFNAME names it)
SLURMD_PORT, SLURMCTLD_PORT = 16818, 16817


def unavailable() -> str | None:
    """Why the cluster cannot start here (a skip reason), or None."""
    if os.geteuid() != 0:
        return "the Slurm tests start slurmctld, slurmd and munged as root (not root here)"
    missing = [name for name in DAEMONS if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]
    if missing:
        return f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge; .ci/setup-slurm)"
    return None


def two_nodes_unavailable() -> str | None:
    """Why the 2-node cluster cannot start here (no network namespaces: an unprivileged container), or None."""
    probe = "ekslurm-probe"
    if _run("ip", "netns", "add", probe, check=False).returncode != 0:
        return "cannot create a network namespace (ip netns add) for the second node"
    _run("ip", "netns", "del", probe, check=False)
    return None


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


class Cluster:
    """``with Cluster(tmp, nodes=2) as cluster:`` ... ``cluster.sbatch(script)``; ``cluster.env`` for the clients."""

    def __init__(self, root: Path, nodes: int = 1, cpus: int = 2):
        self.root, self.nodes, self.cpus = root, nodes, cpus
        self.names = [f"n{i + 1}" for i in range(nodes)]
        self.netns = nodes > 1
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Cluster:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.netns:
            self._remove_network()

    def address(self, index: int) -> str:
        return f"{PREFIX}.{11 + index}" if self.netns else "127.0.0.1"

    def _start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in ("state", "munge", *(f"spool-{name}" for name in self.names)):
            (self.root / folder).mkdir(mode=0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = self.root / "munge" / "munge.socket"
        self._spawn(["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={socket_path}",
                     f"--pid-file={self.root / 'munge' / 'munged.pid'}", f"--log-file={self.root / 'munged.log'}",
                     f"--seed-file={self.root / 'munge' / 'munged.seed'}"])
        _wait_for(socket_path.exists, 10, "munged's socket")
        if self.netns:
            self._make_network()
        self.conf.write_text(self._slurm_conf(socket_path))
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)])
        _wait_for(self._ping, 30, "slurmctld")
        for index, name in enumerate(self.names):
            # nsenter, not `ip netns exec`, which mounts a sysfs of its own without /sys/fs/cgroup (slurmd's
            # cgroup plugin then fails to start even with proctrack/linuxproc)
            prefix = ["nsenter", f"--net=/run/netns/{self._namespace(index)}"] if self.netns else []
            self._spawn([*prefix, "slurmd", "-D", "-N", name, "-f", str(self.conf)])
        _wait_for(self._nodes_idle, 60, f"slurmd on {', '.join(self.names)} (idle)")

    def _spawn(self, argv: list[str]) -> None:
        log = open(self.root / f"{Path(argv[0]).name}-{len(self.procs)}.out", "wb")  # noqa: SIM115 (closed with it)
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def _ping(self) -> bool:
        done = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=self.env, check=False)
        return "UP" in done.stdout

    def _nodes_idle(self) -> bool:
        done = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, env=self.env,
                              check=False)
        states = dict(line.split() for line in done.stdout.splitlines() if line.strip())
        return all(states.get(name, "").startswith("idle") for name in self.names)

    def _slurm_conf(self, munge_socket: Path) -> str:
        host = socket.gethostname().split(".")[0]
        controller = BRIDGE_ADDR if self.netns else "127.0.0.1"
        nodes = "\n".join(f"NodeName={name} NodeAddr={self.address(i)} CPUs={self.cpus} RealMemory=1000 "
                          "State=UNKNOWN" for i, name in enumerate(self.names))
        r = self.root
        return f"""# Written by tests/slurm_cluster.py for one test; the reasons are there.
ClusterName=envkit-test
SlurmctldHost={host}({controller})
SlurmUser=root
SlurmctldPort={SLURMCTLD_PORT}
SlurmdPort={SLURMD_PORT}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool-%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd-%n.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd-%n.log
SlurmdDebug=info
# No cgroups here (a container, no systemd): processes are tracked by parentage, tasks not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
# The nodes' CPUs as configured, not as found (both nodes share this machine's cores).
SlurmdParameters=config_overrides
ReturnToService=2
# SIGTERM -> SIGKILL on requeue: room for the trainer's checkpoint on a busy machine.
KillWait=60
MinJobAge=600
{nodes}
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""

    def _namespace(self, index: int) -> str:
        return f"ekslurm-{self.names[index]}"

    def _make_network(self) -> None:
        self._remove_network()  # what an earlier, killed run left
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{BRIDGE_ADDR}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        for index in range(self.nodes):
            ns, outside = self._namespace(index), f"ekslurm-v{index + 1}"
            _run("ip", "netns", "add", ns)
            _run("ip", "link", "add", outside, "type", "veth", "peer", "name", NODE_IFNAME, "netns", ns)
            _run("ip", "link", "set", outside, "master", BRIDGE, "up")
            _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.address(index)}/24", "dev", NODE_IFNAME)
            _run("ip", "netns", "exec", ns, "ip", "link", "set", NODE_IFNAME, "up")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def _remove_network(self) -> None:
        for index in range(self.nodes):
            _run("ip", "netns", "del", self._namespace(index), check=False)  # takes its veth end along
        _run("ip", "link", "del", BRIDGE, check=False)

    def sbatch(self, script: Path, *options: str) -> str:
        done = subprocess.run(["sbatch", "--parsable", *options, str(script)], capture_output=True, text=True,
                              env=self.env, check=True)
        return done.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """scontrol show job's KEY=VALUE fields (JobState, ExitCode, Restarts, ...)."""
        done = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True,
                              env=self.env, check=False)
        return dict(field.split("=", 1) for field in done.stdout.split() if "=" in field)

    def wait_job(self, job_id: str, timeout_s: float, until=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                                            "NODE_FAIL", "OUT_OF_MEMORY")) -> dict[str, str]:
        _wait_for(lambda: self.job(job_id).get("JobState") in until, timeout_s, f"job {job_id} to reach {until}")
        return self.job(job_id)

    def scontrol(self, *args: str) -> str:
        return subprocess.run(["scontrol", *args], capture_output=True, text=True, env=self.env, check=True).stdout


def _wait_for(ready, timeout_s: float, what: str, poll_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:g} s for {what}")
        time.sleep(poll_s)
