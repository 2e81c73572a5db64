"""Two real gloo ranks on CPU through `accelerate launch`: plain DDP (tests/test_accelerator.py) and DeepSpeed ZeRO
with the shipped configs/deepspeed/zeroN.json (tests/test_deepspeed.py), and the checks of a finished ZeRO run.

The first DeepSpeed run on a machine compiles a C++ op (shared-memory comm, 25-60 s); it is cached in
TORCH_EXTENSIONS_DIR (here ~/.cache/clipbert_emo/torch_extensions unless already set), so later runs start in
seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from support import TINY_OVERRIDES, data_overrides

ROOT = Path(__file__).resolve().parent.parent.parent

LAUNCH_DDP = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def ddp_env():
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1"}


def run_ddp(out, synthemo_dir, *extra, script=("-m", "clipbert_emo.cli"), env=None):
    """`finetune` of the tiny model on ``synthemo_dir`` under 2 DDP ranks; the finished process."""
    cmd = [*LAUNCH_DDP, *script, "finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir),
           f"train.output_dir={out}", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env or ddp_env())


def deepspeed_env():
    ext = os.environ.get("TORCH_EXTENSIONS_DIR") or str(Path.home() / ".cache" / "clipbert_emo" / "torch_extensions")
    # The venv's bin first, as under an activated venv (and on the machines of tests/test_multinode.py): torch builds
    # the op with the first `ninja` on PATH, and the venv's (1.13) and a system one (Debian's 1.11) do not read each
    # other's build log, so alternating between them rebuilt the cached op every time.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TORCH_EXTENSIONS_DIR": ext, "PATH": path}


def launch_deepspeed(stage, out, synthemo_dir, *extra, script=("-m", "clipbert_emo.cli"), env=None, ds_config=None):
    """`finetune` of the tiny model on ``synthemo_dir`` (train and val) under 2 DeepSpeed ZeRO-``stage`` ranks."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--use_deepspeed",
           "--deepspeed_config_file", str(ds_config or ROOT / "configs" / "deepspeed" / f"zero{stage}.json"),
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           *script, "finetune", "-q", *TINY_OVERRIDES,
           f"data.train_manifest={synthemo_dir / 'train.jsonl'}", f"data.val_manifest={synthemo_dir / 'val.jsonl'}",
           f"train.output_dir={out}", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**deepspeed_env(), **(env or {})},
                          cwd=ROOT)
    return proc


def check_deepspeed_run(out, precision="no"):
    """The checks every 2-rank ZeRO run of 16 samples x 2 epochs passes; its metrics.json."""
    from safetensors.torch import load_file

    from clipbert_emo.checkpoint import load_checkpoint

    m = json.loads((out / "metrics.json").read_text())
    assert m["num_processes"] == 2
    a, b = m["rank_param_checksums"]
    assert a == b, "the ranks ended with different weights"
    assert m["steps"] == 4  # 16 samples / (batch 4 x 2 ranks) x 2 epochs
    assert all(torch.isfinite(torch.tensor(m["step_losses"])))
    lrs = [h["lr"] for h in m["history"]]
    assert lrs[0] > 0 and lrs[-1] == pytest.approx(0.0, abs=1e-12)  # one schedule step per optimizer step
    # The saved weights are the complete model (ZeRO-3 gathers them on rank 0), loadable strictly, and
    # they are the weights the ranks ended with (checksum over parameters and floating buffers).
    for sub in ("checkpoint", "last"):
        model, _, _ = load_checkpoint(out / sub)
        assert all(v.numel() > 0 for v in model.state_dict().values())
    saved = load_file(str(out / "last" / "model.safetensors"))
    total = sum(v.double().sum().item() for v in saved.values() if v.is_floating_point())
    assert total == pytest.approx(a, rel=1e-9)
    dtypes = {v.dtype for v in saved.values() if v.is_floating_point()}
    # DeepSpeed's bf16/fp16 modes keep 16-bit weights in the module (fp32 master copies in the optimizer)
    assert dtypes == ({torch.float32} if precision == "no"
                      else {torch.bfloat16 if precision == "bf16" else torch.float16})
    # DeepSpeed's own shards of the last save (for an exact resume), one optimizer file per rank
    shard_dirs = list((out / "deepspeed_state").iterdir())
    assert [d.name for d in shard_dirs] == [f"step_{m['steps']}"]
    assert len(list((shard_dirs[0] / "state").glob("*optim_states.pt"))) == 2
    return m


# --- two machines on one host ----------------------------------------------------------------------------------
# launch/node.sh is what each machine of a cluster runs (launch/slurm_pretrain.sbatch starts it once per node
# through srun). Here two of them start at once on this host, as machine 0 and machine 1 of a 2 x 1-process run
# (gloo over 127.0.0.1). Each "machine" has its own folder: working directory, HOME (and so ~/.cache, matplotlib's
# cache), TMPDIR, XDG_CACHE_HOME, HF_HOME and TORCH_EXTENSIONS_DIR; the run's output_dir is one folder both see,
# as on a cluster's shared file system.

NODE_SCRIPT = ROOT / "launch" / "node.sh"
SBATCH = ROOT / "launch" / "slurm_pretrain.sbatch"

# Installed in every process of a machine (a sitecustomize on the machine's PYTHONPATH):
# - a log of writers: every change a process makes to files under WATCH_DIR (files opened for writing, renames,
#   removals, new folders: Python's audit events; plus torch.save and safetensors' save_file, whose C++/Rust code
#   writes without them), with the process's global rank and machine, appended to WRITERS_LOG in the machine's
#   own folder;
# - where KILL_AT_STEP is set, the training process stops after that optimizer step (after last/ is saved, when the
#   run saves every step), writes its pid to KILL_MARKER and waits there to be killed with its machine.
SITECUSTOMIZE = r'''
import json, os, sys

_watch = os.environ.get("WATCH_DIR")
if _watch:
    _log = open(os.environ["WRITERS_LOG"], "a", buffering=1)
    _who = {"rank": os.environ.get("RANK", "launcher"), "node": os.environ.get("GROUP_RANK"), "pid": os.getpid()}

    def _path(p, dir_fd=None):
        if isinstance(p, (str, bytes, os.PathLike)):
            p = os.fsdecode(p)
            if isinstance(dir_fd, int) and dir_fd >= 0 and not os.path.isabs(p):  # shutil.rmtree's unlinks
                p = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), p)
            p = os.path.abspath(p)
            if p.startswith(_watch.rstrip(os.sep) + os.sep):
                return p
        return None

    def _note(event, paths):
        hits = [p for p in (_path(*a) for a in paths) if p]
        if hits:
            _log.write(json.dumps({**_who, "event": event, "paths": hits}) + "\n")

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            if (mode is not None and any(c in mode for c in "wax+")) or (
                    mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                _note(event, ((path, None),))
        elif event == "os.rename":  # os.replace too: (src, dst, src_dir_fd, dst_dir_fd)
            _note(event, ((args[0], args[2]), (args[1], args[3])))
        elif event in ("os.remove", "os.rmdir", "shutil.rmtree"):  # (path, dir_fd)
            _note(event, ((args[0], args[1]),))
        elif event == "os.mkdir":  # (path, mode, dir_fd)
            _note(event, ((args[0], args[2]),))
        elif event == "os.truncate":
            _note(event, ((args[0], None),))

    sys.addaudithook(_hook)

    # torch.save and save_file, wrapped as their modules are first imported (before anyone binds them by name)
    import importlib.abc
    import importlib.machinery

    _WRAP = {"torch.serialization": ("save", 1), "safetensors.torch": ("save_file", 1)}

    class _Wrapping(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in _WRAP:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return spec
            run = spec.loader.exec_module
            attr, where = _WRAP[name]

            def exec_module(module):
                run(module)
                real = getattr(module, attr)

                def writer(*args, **kwargs):
                    target = args[where] if len(args) > where else kwargs.get("f", kwargs.get("filename"))
                    _note(attr, ((target, None),))
                    return real(*args, **kwargs)

                setattr(module, attr, writer)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Wrapping())

if os.environ.get("KILL_AT_STEP") and os.environ.get("RANK"):
    import time

    from clipbert_emo.train import engine as _engine

    def _stop(step, _at=int(os.environ["KILL_AT_STEP"])):
        if step == _at:
            with open(os.environ["KILL_MARKER"] + ".part", "w") as f:
                f.write(str(os.getpid()))
            os.replace(os.environ["KILL_MARKER"] + ".part", os.environ["KILL_MARKER"])
            time.sleep(3600)  # until the test kills this machine

    _engine._after_step = _stop
'''

# SLURM's srun for the sbatch script, on one host: one task per node of the job (the nodes listed in
# FAKE_SLURM_NODES: working folder, log file, the machine's own environment), all started at once, each with its
# SLURM_NODEID; like --kill-on-bad-exit, a task that fails takes the others down.
FAKE_SRUN = r'''#!{python}
import json, os, signal, subprocess, sys, time

args = sys.argv[1:]
while args and args[0].startswith("-"):  # srun's own options
    args.pop(0)
nodes = json.load(open(os.environ["FAKE_SLURM_NODES"]))
assert len(nodes) == int(os.environ["SLURM_NNODES"])
tasks = []
for n, node in enumerate(nodes):
    env = {{**os.environ, **node["env"], "SLURM_NODEID": str(n), "SLURM_PROCID": str(n), "SLURM_LOCALID": "0"}}
    with open(node["log"], "a") as log:
        tasks.append(subprocess.Popen(args, cwd=node["cwd"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
while any(t.poll() is None for t in tasks):
    if any(t.returncode not in (None, 0) for t in tasks):
        for t in tasks:
            if t.poll() is None:
                os.killpg(t.pid, signal.SIGKILL)
    time.sleep(0.2)
sys.exit(max(abs(t.returncode) for t in tasks))
'''

FAKE_SCONTROL = """#!/bin/bash
# `scontrol show hostnames LIST`: both nodes of the job are this host
[ "$1 $2" = "show hostnames" ] && printf '127.0.0.1\\n127.0.0.1\\n'
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_environ() -> dict:
    """This process's environment without what a launch this test may itself run under would leak in."""
    return {k: v for k, v in os.environ.items()
            if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
                         "MASTER_PORT", "TORCH_EXTENSIONS_DIR", "PYTHONPATH")
            and not k.startswith(("ACCELERATE_", "PYTEST_", "SLURM_"))}


class Machine:
    """One machine: its own folder (working directory, HOME, TMPDIR, caches), its launcher and what it printed."""

    def __init__(self, folder: Path, rank: int, extensions: Path | None = None):
        self.folder, self.rank, self.proc = folder, rank, None
        for sub in ("work", "home", "tmp", "site"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        if extensions is not None and not (folder / "torch_extensions").exists():
            # DeepSpeed's C++ op, built once per test session: as on a node whose image has it built already
            shutil.copytree(extensions, folder / "torch_extensions", symlinks=True,
                            ignore=shutil.ignore_patterns("lock"))

    def local_env(self, watch: Path, extra: dict | None = None) -> dict:
        """What belongs to this machine alone (and the writers log)."""
        f = self.folder
        return {"HOME": str(f / "home"), "TMPDIR": str(f / "tmp"), "XDG_CACHE_HOME": str(f / "home" / ".cache"),
                "HF_HOME": str(f / "home" / ".cache" / "huggingface"),
                "TORCH_EXTENSIONS_DIR": str(f / "torch_extensions"), "PYTHONPATH": str(f / "site"),
                "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "WATCH_DIR": str(Path(watch).resolve()), "WRITERS_LOG": str(f / "writers.jsonl"), **(extra or {})}

    @property
    def log(self) -> str:
        return (self.folder / "launch.log").read_text(errors="replace")

    def writes(self) -> list[dict]:
        """The writers log: {"rank", "node", "pid", "event", "paths"} per change, in order."""
        f = self.folder / "writers.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []

    def start(self, args, env: dict) -> None:
        with open(self.folder / "launch.log", "a") as log:
            self.proc = subprocess.Popen(["bash", str(NODE_SCRIPT), *args], cwd=self.folder / "work", env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """The machine goes down: its launcher and every process under it, all at once."""
        kill_tree(self.proc)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and every process under it (torchrun starts the training processes in sessions of their
    own, so the process group is not enough)."""
    import signal

    for pid in [proc.pid, *_descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _descendants(pid: int) -> list[int]:
    """The processes under ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def node_env(rank: int, port: int, recipe: str, accel_config: str) -> dict:
    """What launch/slurm_pretrain.sbatch hands launch/node.sh on node ``rank`` of a 2-node job with 1 process per
    node (tests/test_multinode.py checks that the script does hand it this)."""
    return {"NUM_MACHINES": "2", "MACHINE_RANK": str(rank), "MAIN_IP": "127.0.0.1", "MAIN_PORT": str(port),
            "GPUS_PER_NODE": "1", "RECIPE": recipe, "CONFIG": "", "ACCEL_CONFIG": accel_config}


def two_machines(folder: Path, recipe: str, args, accel_config="launch/accelerate_multi_node.yaml", watch=None,
                 extensions=None, timeout=600, kill_node1_at_step=None):
    """Run ``recipe`` with ``args`` on machine 0 and machine 1 (launch/node.sh on each, started together).

    ``kill_node1_at_step``: machine 1's training process stops after that optimizer step and then the whole of
    machine 1 is killed; machine 0 is left to notice on its own, and killed as srun --kill-on-bad-exit would if it
    has not stopped 120 s later. Returns the two finished machines and, for a kill, how machine 0 ended:
    "exited" or "killed".
    """
    import time

    port = free_port()
    machines = [Machine(folder / f"machine{r}", r, extensions) for r in (0, 1)]
    for m in machines:
        kill = {}
        if kill_node1_at_step is not None and m.rank == 1:
            kill = {"KILL_AT_STEP": str(kill_node1_at_step), "KILL_MARKER": str(m.folder / "stopped")}
        m.start(args, {**_clean_environ(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                       **m.local_env(watch or folder, kill), **node_env(m.rank, port, recipe, accel_config)})
    deadline = time.time() + timeout
    if kill_node1_at_step is not None:
        while not (machines[1].folder / "stopped").exists():
            if machines[1].proc.poll() is not None or time.time() > deadline:
                for m in machines:
                    m.kill()
                raise AssertionError(f"machine 1 never reached step {kill_node1_at_step}:\n{machines[1].log[-4000:]}")
            time.sleep(0.2)
        machines[1].kill()
        try:
            machines[0].proc.wait(timeout=120)
            return machines, "exited"
        except subprocess.TimeoutExpired:
            machines[0].kill()
            return machines, "killed"
    for m in machines:
        try:
            m.proc.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            for other in machines:
                other.kill()
            raise AssertionError(f"the run did not finish in {timeout} s:\n{machines[0].log[-3000:]}\n"
                                 f"{machines[1].log[-3000:]}") from None
    return machines, None


def deepspeed_extensions() -> Path:
    """A folder with DeepSpeed's C++ op built (the one deepspeed_env() names: built there once, reused)."""
    env = deepspeed_env()
    subprocess.run([sys.executable, "-c", "from deepspeed.comm.torch import build_shm_op; build_shm_op()"], env=env,
                   check=True, capture_output=True, timeout=900)
    return Path(env["TORCH_EXTENSIONS_DIR"])


def slurm_job(folder: Path, env: dict, watch=None, extensions=None, timeout=600):
    """``bash launch/slurm_pretrain.sbatch`` as SLURM would run it for a 2-node job, with ``env`` (RECIPE, EXTRA,
    ...): srun and scontrol are stand-ins that start one task per node on this host, each in its machine's folder.
    Returns the two machines (their logs and writers), the batch script's finished process and its output."""
    bin_dir = folder / "slurm_bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "srun").write_text(FAKE_SRUN.format(python=sys.executable))
    (bin_dir / "scontrol").write_text(FAKE_SCONTROL)
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    machines = [Machine(folder / f"machine{r}", r, extensions) for r in (0, 1)]
    nodes = [{"cwd": str(m.folder / "work"), "log": str(m.folder / "launch.log"),
              "env": m.local_env(watch or folder)} for m in machines]
    (folder / "nodes.json").write_text(json.dumps(nodes))
    job_env = {**_clean_environ(), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               "VENV": str(Path(sys.executable).parent.parent), "FAKE_SLURM_NODES": str(folder / "nodes.json"),
               "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "node-[01-02]", "SLURM_SUBMIT_DIR": str(ROOT),
               "SLURM_JOB_ID": "1", **env}
    with open(folder / "job.log", "w") as log:
        proc = subprocess.Popen(["bash", str(SBATCH)], cwd=ROOT, env=job_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise AssertionError(f"the job did not finish in {timeout} s:\n{machines[0].log[-3000:]}\n"
                             f"{machines[1].log[-3000:]}") from None
    return machines, proc, (folder / "job.log").read_text()
