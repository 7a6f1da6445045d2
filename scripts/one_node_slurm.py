"""A throw-away one-node SLURM cluster on this machine, for trying a sweep before the real cluster
and for the test suite (`make test-slurm`).

    sudo python3 scripts/one_node_slurm.py start /tmp/ntksim-slurm   # prints: export SLURM_CONF=…
    export SLURM_CONF=/tmp/ntksim-slurm/slurm.conf
    ntksim run configs/quick.yaml --out runs/try --executor slurm
    sudo python3 scripts/one_node_slurm.py stop /tmp/ntksim-slurm

Needs root and Debian's `slurmctld slurmd slurm-client munge` (22.05 tested). Everything lives in
the given directory — its own munge key and socket, `slurm.conf` on free ports, state, spool, logs
and pid files — selected with SLURM_CONF; no system configuration is read or touched. `stop`
cancels the cluster's jobs and ends exactly the daemons `start` started, by the pids it recorded.
Standard library only: it runs before any environment exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("slurmd", "slurmctld", "munged")  # stopped in this order
NEEDED = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel")


class SlurmUnavailable(RuntimeError):
    """This machine cannot host the cluster (not root, or SLURM/munge not installed)."""


def missing_tools() -> list[str]:
    """The SLURM and munge programs not on PATH (or in /usr/sbin, where Debian puts daemons)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [tool for tool in NEEDED if shutil.which(tool, path=path) is None]


def why_unavailable() -> str | None:
    """None when `start` can work here, else the reason (for a pytest skip)."""
    if os.geteuid() != 0:
        return "the one-node SLURM cluster needs root (its daemons run as root)"
    missing = missing_tools()
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing): make test-slurm installs it"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def slurm_conf(directory: Path, host: str, cpus: int, memory_mb: int, ports: list[int]) -> str:
    """A one-node, one-partition configuration: no accounting, no cgroups (containers lack them),
    the scheduler woken every second so short test jobs start at once."""
    d = directory
    return f"""\
# Written by scripts/one_node_slurm.py: a throw-away one-node cluster.
ClusterName=ntksim-one-node
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/munge.sock
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
KillWait=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def environment(directory: Path) -> dict[str, str]:
    """os.environ with this cluster selected (and /usr/sbin on PATH for the daemons)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return {**os.environ, "SLURM_CONF": str(directory / "slurm.conf"), "PATH": path}


def _run(command: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {(proc.stderr or proc.stdout).strip()}")


def _node_state(env: dict[str, str]) -> str:
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def start(directory: Path, cpus: int = 4, memory_mb: int = 4000, timeout_s: float = 60) -> Path:
    """Start munged, slurmctld and slurmd for a new cluster in `directory`; returns slurm.conf's
    path once the node is idle. `cpus` may exceed the machine's (config_overrides): array tests
    need free slots, and the daemons do not check. On any failure, what was started is stopped."""
    reason = why_unavailable()
    if reason:
        raise SlurmUnavailable(reason)
    directory = Path(directory).resolve()
    _check_directory(directory)
    if (directory / "slurm.conf").exists():
        raise RuntimeError(f"{directory} holds a running cluster (slurm.conf); stop it first")
    try:
        return _start(directory, cpus, memory_mb, timeout_s)
    except BaseException:
        stop(directory)
        raise


def _check_directory(directory: Path) -> None:
    """Root's daemons read their configuration from here: refuse a directory another user made
    (or can write), which could hand them a slurm.conf of its own; munged wants its socket's
    directories world-traversable (pytest's tmp is 0700)."""
    if directory.exists():
        info = directory.stat()
        if info.st_uid != 0 or info.st_mode & 0o022:
            raise RuntimeError(f"{directory} is not root's own (or others can write it): use a new directory")
    else:
        directory.mkdir(mode=0o755, parents=True)
    for parent in (directory, *directory.parents):
        if parent == Path(parent.anchor):
            break
        if not os.stat(parent).st_mode & 0o001:
            raise RuntimeError(f"{parent} is not world-executable (munged needs it): use a directory in /tmp")


def _start(directory: Path, cpus: int, memory_mb: int, timeout_s: float) -> Path:
    for sub in ("state", "spool"):
        (directory / sub).mkdir(exist_ok=True)
    env = environment(directory)
    host = socket.gethostname().split(".")[0]
    (directory / "slurm.conf").write_text(slurm_conf(directory, host, cpus, memory_mb, _free_ports(2)))
    (directory / "munge.key").unlink(missing_ok=True)
    _run(["mungekey", "--create", "--keyfile", str(directory / "munge.key")], env)
    munged = ["munged", f"--key-file={directory}/munge.key", f"--socket={directory}/munge.sock"]
    munged += [f"--pid-file={directory}/munged.pid", f"--log-file={directory}/munged.log"]
    _run([*munged, f"--seed-file={directory}/munged.seed"], env)
    _run(["slurmctld"], env)
    _run(["slurmd"], env)
    deadline = time.monotonic() + timeout_s
    while (state := _node_state(env)) != "idle":
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the node is not idle after {timeout_s:.0f} s (state {state!r}); see {directory}"
            )
        time.sleep(0.5)
    return directory / "slurm.conf"


def _alive(pid: int, name: str) -> bool:
    """pid runs the daemon `name` (not a process that reused a dead daemon's pid)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == name
    except OSError:
        return False


def stop(directory: Path, timeout_s: float = 30) -> list[str]:
    """Cancel every job of this cluster (whoever submitted it), end its daemons by their recorded
    pids, and remove its configuration and state, so `start` can use the directory again (logs
    stay). Returns the job ids still queued when the daemons had to go (normally none)."""
    directory = Path(directory).resolve()
    env = environment(directory)
    left: list[str] = []
    if (directory / "slurmctld.pid").exists():
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # let slurmd end the job steps before it goes
            proc = subprocess.run(
                ["squeue", "-h", "-o", "%A"], env=env, capture_output=True, text=True, timeout=30
            )
            left = proc.stdout.split() if proc.returncode == 0 else []
            if not left:
                break
            subprocess.run(["scancel", "--full", *left], env=env, capture_output=True, timeout=30)
            time.sleep(0.5)
    for name in DAEMONS:
        pid_file = directory / f"{name}.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if _alive(pid, name):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _alive(pid, name) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid, name):
                os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
    (directory / "slurm.conf").unlink(missing_ok=True)
    for sub in ("state", "spool"):
        shutil.rmtree(directory / sub, ignore_errors=True)
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "action", choices=("start", "stop", "check"), help="check: exit 1 if a program is missing"
    )
    parser.add_argument(
        "directory", type=Path, nargs="?", help="where the cluster keeps everything (in /tmp)"
    )
    parser.add_argument("--cpus", type=int, default=4, help="CPUs the node offers (default 4)")
    args = parser.parse_args(argv)
    if args.action == "check":
        missing = missing_tools()
        if missing:
            print(f"one_node_slurm: missing {', '.join(missing)}", file=sys.stderr)
        return 1 if missing else 0
    if args.directory is None:
        parser.error(f"{args.action} needs the cluster's directory")
    try:
        if args.action == "start":
            conf = start(args.directory, cpus=args.cpus)
            print(f"export SLURM_CONF={conf}")
        else:
            left = stop(args.directory)
            if left:
                print(f"one_node_slurm: jobs {', '.join(left)} were still queued when the daemons stopped")
    except (SlurmUnavailable, RuntimeError) as err:
        print(f"one_node_slurm: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
