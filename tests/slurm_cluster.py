"""A real one-node SLURM cluster (slurmctld + slurmd + munged) on 127.0.0.1, living in one folder.

Used by tests/test_slurm.py, and by hand: ``python tests/slurm_cluster.py DIR`` starts a cluster in DIR,
prints the ``SLURM_CONF`` to export, and stops it on Ctrl-C. Everything (munge key and socket, slurm.conf,
spool, state, logs, the job completion log) lives in that folder; nothing under /etc is touched. The
daemons run in the foreground as children of this process and are stopped by their pids.

Needs the Debian packages slurm-wlm and munge (tools/install_slurm.sh) and root, as SlurmUser=root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol")
NODE = "czbnode"
PARTITION = "cpu"
GPU_PARTITION = "gpu"


def missing_binaries() -> List[str]:
    """The SLURM and munge programs this module needs that are not installed."""
    search = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin"
    return [name for name in DAEMONS + CLIENTS if shutil.which(name, path=search) is None]


def _binary(name: str) -> str:
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin")
    if found is None:
        raise RuntimeError(f"{name} is not installed (run tools/install_slurm.sh)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _machine_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


class SlurmCluster:
    """One SLURM node with ``cpus`` CPUs; ``start()`` returns once ``sinfo`` shows it idle."""

    def __init__(self, root: Path, cpus: int = 2) -> None:
        self.root = Path(root).resolve()
        self.cpus = cpus
        self.conf = self.root / "slurm.conf"
        self.jobcomp_log = self.root / "jobcomp.log"
        self._daemons: Dict[str, subprocess.Popen] = {}

    # ----------------------------------------------------------------------------------- set-up
    @property
    def env(self) -> Dict[str, str]:
        """Environment for SLURM clients (sbatch, squeue, ... and so Nextflow) to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        for sub in ("state", "spool", "log", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        # A bit below the machine's memory: slurmd drains a node that claims more than it has.
        memory = max(1024, int(_machine_memory_mb() * 0.9))
        user = "root"
        self.conf.write_text(f"""\
# Written by tests/slurm_cluster.py: a throwaway one-node cluster.
ClusterName=czbtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.root / 'munge' / 'munge.socket'}
StateSaveLocation={self.root / 'state'}
SlurmdSpoolDir={self.root / 'spool'}
SlurmctldPidFile={self.root / 'slurmctld.pid'}
SlurmdPidFile={self.root / 'slurmd.pid'}
SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}
SlurmdLogFile={self.root / 'log' / 'slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups (containers and CI machines often lack a usable cgroup tree): a job is its process group.
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
# No slurmdbd: each finished job is one line of this file (job id, name, state, exit code).
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp_log}
ReturnToService=2
SlurmdParameters=config_overrides
MaxJobCount=10000
# Finished jobs stay visible to `scontrol show job` for an hour (partition, GRES asked for).
MinJobAge=3600
MailProg=/bin/true
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
MpiDefault=none
# One GRES "gpu" without a device file: jobs asking --gres=gpu:1 can be scheduled (see job_details).
GresTypes=gpu
NodeName={NODE} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName={GPU_PARTITION} Nodes={NODE} Default=NO MaxTime=INFINITE State=UP OverSubscribe=NO
""")
        (self.root / "gres.conf").write_text(f"AutoDetect=off\nNodeName={NODE} Name=gpu File=/dev/null Count=1\n")

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "ab")
        env = dict(os.environ, **self.env)
        self._daemons[name] = subprocess.Popen([_binary(name), *args], stdout=log, stderr=subprocess.STDOUT,
                                               env=env, start_new_session=True)

    def start(self, timeout: float = 120.0) -> "SlurmCluster":
        """Write the config, start munged, slurmctld and slurmd, and wait for the node to be idle."""
        self._write_config()
        munge = self.root / "munge"
        key = munge / "munge.key"
        if not key.exists():
            subprocess.run([_binary("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
        os.chmod(key, 0o600)
        # --force: munged refuses a socket or log under a folder it did not create itself otherwise.
        self._spawn("munged", "--foreground", "--force", f"--socket={munge / 'munge.socket'}", f"--key-file={key}",
                    f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
                    f"--seed-file={munge / 'munged.seed'}")
        self._wait(lambda: (munge / "munge.socket").exists(), timeout, "munged did not open its socket")
        self._spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        self._spawn("slurmd", "-D", "-N", NODE, "-f", str(self.conf))
        self._wait(self._node_idle, timeout, "the SLURM node never became idle")
        return self

    def _node_idle(self) -> bool:
        for name, proc in self._daemons.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs()}")
        out = self.client("sinfo", "--noheader", "-n", NODE, "-o", "%T", check=False)
        state = out.stdout.strip() if out.returncode == 0 else ""
        if state.startswith(("drain", "inval", "down")):
            raise RuntimeError(f"the SLURM node is {state}:\n{self.logs()}")
        return state == "idle"

    def _wait(self, ready, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{message} within {timeout:.0f} s:\n{self.logs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        """Tails of the daemons' logs, for failure messages."""
        texts = []
        for path in sorted((self.root / "log").glob("*.log")) + [self.root / "munge" / "munged.log"]:
            if path.exists():
                texts.append(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-25:]))
        return "\n".join(texts)

    def stop(self) -> None:
        """Cancel the cluster's jobs (their slurmstepd would outlive slurmd), then stop the daemons this
        object started: SIGTERM, then SIGKILL after 20 s."""
        if self._daemons.get("slurmctld") and self._daemons["slurmctld"].poll() is None:
            self.client("scancel", f"--user={os.getuid()}", check=False)
            try:
                wait_for(lambda: not self.client("squeue", "--noheader", check=False).stdout.strip(), timeout=30)
            except TimeoutError:
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._daemons.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------- use
    def client(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run one SLURM client command against this cluster."""
        proc = subprocess.run([_binary(name), *args], env=dict(os.environ, **self.env),
                              capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{name} {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def running_jobs(self) -> List[Dict[str, str]]:
        """Jobs in state RUNNING: [{'id', 'name'}]."""
        out = self.client("squeue", "--noheader", "-t", "RUNNING", "-o", "%i|%j").stdout
        return [dict(zip(("id", "name"), line.split("|", 1))) for line in out.splitlines() if "|" in line]

    def completed_jobs(self) -> Dict[str, Dict[str, str]]:
        """SLURM's own record of every finished job, from the job completion log, keyed by job id."""
        if not self.jobcomp_log.exists():
            return {}
        records = {}
        for line in self.jobcomp_log.read_text().splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobId" in fields:
                records[fields["JobId"]] = fields
        return records

    def job_details(self, job_id: str) -> Dict[str, str]:
        """`scontrol show job` of one job (also finished ones, for MinJobAge): Partition, TresPerNode, ..."""
        out = self.client("scontrol", "show", "job", "--oneliner", job_id).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def job_pids(self, job_id: str) -> List[int]:
        """Pids of the processes a job runs (their environment carries its SLURM_JOB_ID)."""
        pids = []
        marker = f"SLURM_JOB_ID={job_id}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    @staticmethod
    def cmdline(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy, which is returned; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def main(argv: Optional[List[str]] = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the cluster keeps its config, state and logs")
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args(argv)
    cluster = SlurmCluster(args.folder, cpus=args.cpus).start()
    print(f"SLURM is up. In another shell: export SLURM_CONF={cluster.conf}\nCtrl-C stops it.", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
