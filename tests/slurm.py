"""A real one-node SLURM cluster for tests: munged + slurmctld + slurmd in a temporary folder.

Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them). Everything lives in a private
folder: a munged with its own socket, ``slurm.conf`` (read by the client commands through
``SLURM_CONF``), state, spool, logs and pid files, on two free ports; nothing under /etc or /run
is touched. The daemons run as root (SlurmUser/SlurmdUser root, so jobs run as root too) and
are stopped by their pid files when the fixture ends, also when the tests fail.

Without ``sbatch`` (or without root) the tests using :func:`slurm_cluster` skip, or fail when
``SAM_REQUIRE_SLURM=1`` (set by ``.ci/run``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

REQUIRE_ENV = "SAM_REQUIRE_SLURM"


def missing() -> str | None:
    """Why a one-node cluster cannot be started here, or None when it can."""
    for tool in ("sbatch", "squeue", "scontrol", "sinfo", "slurmctld", "slurmd", "munged", "munge"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} is not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the one-node cluster needs root (slurmd runs jobs as root)"
    if not Path("/etc/munge/munge.key").exists():
        return "/etc/munge/munge.key is missing (reinstall munge)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class Cluster:
    """A running cluster: ``root`` folder, ``env`` (with ``SLURM_CONF``) for client commands."""

    def __init__(self, root: Path, node: str) -> None:
        self.root = root
        self.node = node
        self.conf = root / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.socket"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------------ commands
    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client command against this cluster."""
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, check=check, timeout=timeout)

    def bash(self, script: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a bash script (e.g. the README's sbatch template) with this cluster's environment."""
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def node_state(self) -> str:
        out = self.run("sinfo", "-h", "-n", self.node, "-o", "%T", check=False)
        return out.stdout.strip()

    def job_states(self, job_id: str) -> dict[str, tuple[str, str]]:
        """``{job id (array tasks as 12_3): (JobState, ExitCode)}`` from ``scontrol show job``.

        Finished jobs stay visible for ``MinJobAge`` (300 s by default); no accounting needed.
        """
        out = self.run("scontrol", "-o", "show", "job", job_id, check=False)
        states = {}
        for line in out.stdout.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            jid = fields.get("JobId", "")
            if fields.get("ArrayJobId") and fields.get("ArrayTaskId"):
                jid = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"
            states[jid] = (fields.get("JobState", ""), fields.get("ExitCode", ""))
        return states

    def wait(self, job_ids: Iterable[str], timeout: float) -> dict[str, tuple[str, str]]:
        """Poll until every job (array tasks included) has left PENDING/RUNNING; returns their states.

        Raises TimeoutError (with the daemons' log tails) when ``timeout`` seconds pass first.
        """
        ids = list(job_ids)
        deadline = time.monotonic() + timeout
        active = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}
        while True:
            states: dict[str, tuple[str, str]] = {}
            for jid in ids:
                states.update(self.job_states(jid))
            if states and not any(s in active for s, _ in states.values()):
                # an array not yet split into tasks shows as one pending record: checked above
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"SLURM jobs {ids} still running after {timeout:.0f} s: {states}\n{self.logs()}")
            time.sleep(0.5)

    def logs(self, lines: int = 30) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.root / "log" / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(out)


def _config(root: Path, node: str) -> str:
    return "\n".join(
        [
            "ClusterName=samtest",
            f"SlurmctldHost={node}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ReturnToService=2",
            "MpiDefault=none",
            "JobAcctGatherType=jobacct_gather/none",
            # No RealMemory: a configured size above the machine's would drain the node.
            f"NodeName={node} CPUs={os.cpu_count() or 1} State=UNKNOWN",
            f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def _stop(pid_file: Path, timeout: float = 10) -> None:
    """SIGTERM the daemon whose pid is in ``pid_file``, SIGKILL it if it outlives ``timeout``."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _start(cmd: list[str], what: str, cluster: Cluster, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} did not start ({proc.returncode}): {proc.stderr.strip()}\n{cluster.logs()}")


@contextmanager
def one_node_cluster(timeout: float = 60) -> Iterator[Cluster]:
    """Start munged, slurmctld and slurmd in a private temp folder; stop them on exit."""
    # munged (user munge) needs execute permission on every folder above its socket, so the
    # folder is made here (0711) rather than under pytest's 0700 tmp root.
    root = Path(tempfile.mkdtemp(prefix="sam-slurm-"))
    root.chmod(0o711)
    node = socket.gethostname().split(".")[0]
    cluster = Cluster(root, node)
    try:
        for sub in ("state", "spool", "log"):
            (root / sub).mkdir()
        munge_dir = root / "munge"
        munge_dir.mkdir(mode=0o711)
        shutil.chown(munge_dir, "munge", "munge")
        cluster.conf.write_text(_config(root, node))
        munged = (
            f"{_tool('munged')} --socket={cluster.munge_socket} --pid-file={munge_dir / 'munged.pid'} "
            f"--log-file={munge_dir / 'munged.log'} --seed-file={munge_dir / 'munged.seed'}"
        )
        _start(["su", "-s", "/bin/sh", "munge", "-c", munged], "munged", cluster)
        _start([_tool("slurmctld"), "-f", str(cluster.conf)], "slurmctld", cluster, cluster.env)
        _start([_tool("slurmd"), "-f", str(cluster.conf), "-N", node], "slurmd", cluster, cluster.env)
        deadline = time.monotonic() + timeout
        while (state := cluster.node_state()) != "idle":
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {node} is {state!r}, not idle, after {timeout:.0f} s\n{cluster.logs()}")
            time.sleep(0.25)
        yield cluster
    finally:
        with_jobs = cluster.run("squeue", "-h", "-o", "%A", check=False) if cluster.conf.exists() else None
        if with_jobs is not None and with_jobs.stdout.split():
            cluster.run("scancel", *sorted(set(with_jobs.stdout.split())), check=False)
        _stop(root / "slurmd.pid")
        _stop(root / "slurmctld.pid")
        _stop(root / "munge" / "munged.pid")
        if os.environ.get("SAM_KEEP_SLURM_DIR"):
            print(f"SLURM folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Cluster]:
    """The session's one-node cluster; skips (fails with SAM_REQUIRE_SLURM=1) where SLURM is missing."""
    reason = missing()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV, "").strip() in {"1", "true", "yes"}:
            pytest.fail(f"{REQUIRE_ENV}=1 but no SLURM here: {reason}", pytrace=False)
        pytest.skip(f"no SLURM: {reason}")
    with one_node_cluster() as cluster:
        yield cluster


__all__ = ["REQUIRE_ENV", "Cluster", "missing", "one_node_cluster", "slurm_cluster"]
