"""Two machines for real, on one host: the launch a cluster uses (launch/node.sh on every machine, started by
launch/slurm_pretrain.sbatch through srun), 2 machines x 1 process, for fine-tuning and pretraining, under DDP and
DeepSpeed ZeRO-2/3 through accelerate.

Each machine has its own working folder, HOME, TMPDIR, caches and TORCH_EXTENSIONS_DIR; the output folder is shared
(a cluster's file system). Checked: every process writes only in its own machine's folder and the output folder;
checkpoint/, last/ and metrics.json are written by rank 0 alone, each save's files once (under DeepSpeed each rank also
writes its own optimizer shard); each log line says which rank on which machine wrote it; killing one machine mid-run
and resuming both (--resume) gives the same step losses, history and weights as the uninterrupted run.

The trainings (tiny model, 4 optimizer steps) are in the slow set, which CI runs (make test-slow); the checks of the
launch commands (what the SLURM script, launch/node.sh and launch/README.md say) take a second and run always.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from pathlib import Path

import pytest
import torch

from support import TINY_OVERRIDES, data_overrides
from support.launch import ROOT, deepspeed_extensions, free_port, node_env, slurm_job, two_machines

DDP = "launch/accelerate_multi_node.yaml"
ZERO = "launch/accelerate_deepspeed_zero{}.yaml"


def finetune_args(synthemo_dir, out, *extra):
    # 16 videos / (4 per rank x 2 ranks) = 2 steps per epoch; last/ saved after every step
    return [*TINY_OVERRIDES, *data_overrides(synthemo_dir), "train.epochs=2", "train.save_every_steps=1",
            f"train.output_dir={out}", *extra]


def pretrain_args(pairs_dir, out, *extra):
    # 8 pairs / (2 per rank x 2 ranks) = 2 steps per epoch
    return [*TINY_OVERRIDES, "data.num_frames=1", f"data.train_manifest={pairs_dir / 'train.jsonl'}",
            f"data.val_manifest={pairs_dir / 'val.jsonl'}", "train.batch_size=2", "train.epochs=2",
            "train.save_every_steps=1", f"train.output_dir={out}", *extra]


@pytest.fixture(scope="module")
def extensions():
    pytest.importorskip("deepspeed")
    return deepspeed_extensions()


# --- what every two-machine run is checked for ------------------------------------------------------------------


def check_logs(machines):
    """Every log line of ours names its writer: global rank, machine, host, rank on the machine. Machine r runs
    global rank r (one process each), and each process says once that it joined."""
    for m in machines:
        tags = re.findall(r"^(?:INFO|WARNING|ERROR) \[rank (\d+)/2 node (\d+) \S+ local 0\] ", m.log, re.M)
        assert tags and set(tags) == {(str(m.rank), str(m.rank))}, m.log[-3000:]
        assert re.search(rf"^INFO \[rank {m.rank}/2 node {m.rank} .*\] clipbert_emo\.train\.accelerator: joined a "
                         r"(MULTI_CPU|DEEPSPEED) run of 2 processes", m.log, re.M), m.log[-3000:]


def check_writers(machines, out: Path, last_saves: int, zero: int = 0) -> None:
    """Who wrote what, from the machines' writers logs (see support.launch.SITECUSTOMIZE). ``zero``: the run's ZeRO
    stage (0: DDP)."""
    out = str(out.resolve())

    def under(path, folder):
        return path == folder or path.startswith(folder + "/")

    shared = []
    for m in machines:
        rows = m.writes()
        assert rows, "no writers log"
        for r in rows:
            # a machine writes in its own folder (TMPDIR, HOME, caches) and the shared output folder, nowhere else
            assert all(under(p, str(m.folder.resolve())) or under(p, out) for p in r["paths"]), r
            if any(under(p, out) for p in r["paths"]):
                assert r["rank"] == str(m.rank) and r["node"] == str(m.rank), r  # a training process, never a launcher
                shared.append(r)
    # DeepSpeed: each rank writes its own shards into the step's folder (deepspeed_state/.step_N.tmp/state/), which
    # rank 0 renames once all have written; apart from that, rank 1 writes nothing in the output folder
    shard = re.compile(r"/deepspeed_state/\.step_\d+\.tmp/state/(zero_pp_rank_(\d+)_)?mp_rank_00_(model|optim)"
                       r"_states\.pt$")
    for r in shared:
        if r["rank"] != "0":
            assert zero, f"rank {r['rank']} wrote in the output folder: {r}"
            assert all(re.search(r"/deepspeed_state/\.step_\d+\.tmp(/state)?$", p) for p in r["paths"]) or (
                r["event"] == "save" and shard.search(r["paths"][0])), r
        if r["event"] == "save" and shard.search(r["paths"][0]):
            owner = shard.search(r["paths"][0]).group(2) or "0"  # mp_rank_00_model_states.pt: rank 0's
            assert r["rank"] == owner, r
    # every save of last/ and checkpoint/ is one folder, written by one process (rank 0) and renamed into place by it
    placed = Counter((r["rank"], r["paths"][1][len(out):]) for r in shared if r["event"] == "os.rename")
    assert placed[("0", "/last")] == last_saves and placed[("0", "/metrics.json")] == 1, placed
    assert {rank for rank, _ in placed} == {"0"} and (Path(out) / "checkpoint" / "model.safetensors").is_file()
    # the files of each save (torch.save, safetensors): each file by one process, each file of a last/ or checkpoint/
    # folder once (a DeepSpeed step folder is written again when an epoch ends on a step that was just saved)
    saves = [(r["paths"][0], r["pid"]) for r in shared if r["event"] in ("save", "save_file")]
    by = {}
    for path, pid in saves:
        by.setdefault(path, set()).add(pid)
    assert saves and all(len(pids) == 1 for pids in by.values()), by
    once = Counter(path for path, _ in saves if "/deepspeed_state/" not in path)
    assert set(once.values()) == {1}, once
    folders = {}
    for r in shared:
        for p in r["paths"]:
            top = p[len(out) + 1:].split("/")[0]
            if top.startswith((".last.", ".checkpoint.")) and not top.endswith(".old"):  # (.old: the previous save)
                folders.setdefault(top, set()).add(r["pid"])
    assert len([f for f in folders if f.startswith(".last.")]) == last_saves
    assert all(len(pids) == 1 for pids in folders.values()), folders
    if zero:
        shards = Counter(p.rsplit("/", 1)[1] for p, _ in saves if "/deepspeed_state/" in p)
        # ZeRO-2 keeps the whole module on every rank (rank 0 saves it); ZeRO-3 each rank's slice of it
        expected = ([f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)]
                    + ([f"zero_pp_rank_{r}_mp_rank_00_model_states.pt" for r in (0, 1)] if zero == 3
                       else ["mp_rank_00_model_states.pt"]))
        assert shards == {name: last_saves for name in expected}, shards


def check_run(machines, out: Path, steps: int, last_saves: int, zero: int = 0) -> dict:
    for m in machines:  # (under the SLURM script the job's status says it)
        assert m.proc is None or m.proc.returncode == 0, f"machine {m.rank} failed:\n{m.log[-4000:]}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["steps"] == steps
    a, b = metrics["rank_param_checksums"]
    assert a == b, "the two machines ended with different weights"
    check_logs(machines)
    check_writers(machines, out, last_saves, zero)
    return metrics


def _stage(accel: str) -> int:
    return int(accel[-6]) if "deepspeed_zero" in accel else 0


def kill_and_resume(tmp_path, recipe, args, accel, at_step, extensions=None):
    """Run once without a break, then again with machine 1 killed after ``at_step`` and both resumed; the two
    runs' metrics (the resumed run's writers are checked too)."""
    steps, epochs = 4, 2
    full_out = tmp_path / "full" / "out"
    machines, _ = two_machines(tmp_path / "full", recipe, args(full_out), accel, watch=tmp_path,
                               extensions=extensions)
    full = check_run(machines, full_out, steps, steps + epochs, zero=_stage(accel))

    out = tmp_path / "killed" / "out"
    machines, how = two_machines(tmp_path / "killed", recipe, args(out), accel, watch=tmp_path,
                                 extensions=extensions, kill_node1_at_step=at_step)
    assert machines[0].proc.returncode != 0 and machines[1].proc.returncode != 0
    # machine 0 sees its peer go (gloo: connection reset) and stops by itself, as its launcher reports
    assert how == "exited", machines[0].log[-3000:]
    state = torch.load(out / "last" / "training_state.pt", weights_only=True)
    assert state["step"] == at_step

    # a requeued job may land on other machines: the resume starts on fresh machines, on the same output folder
    machines, _ = two_machines(tmp_path / "resumed", recipe, [*args(out), "--resume"], accel, watch=tmp_path,
                               extensions=extensions)
    # last/ is saved after each remaining step and at the end of each epoch still to finish
    resumed = check_run(machines, out, steps, steps - at_step + epochs - (at_step - 1) // 2, zero=_stage(accel))
    assert re.search(rf"resuming \S+/last from step {at_step} ", machines[0].log)
    assert resumed["step_losses"] == full["step_losses"]  # exactly: same order of the same float operations
    assert resumed["history"] == full["history"]
    assert resumed["rank_param_checksums"] == full["rank_param_checksums"]
    return full, resumed


# --- the launch commands (fast) -----------------------------------------------------------------------------------

RECORDING_ACCELERATE = """#!/bin/bash
# stands in for accelerate: writes the arguments it was given, one a line
printf '%s\\n' "$@" > "$RECORD_DIR/machine$MACHINE_RANK.args"
"""


def _recording_venv(folder: Path) -> Path:
    """A venv stand-in whose `accelerate` records its arguments instead of launching."""
    bin_dir = folder / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "accelerate").write_text(RECORDING_ACCELERATE)
    (bin_dir / "accelerate").chmod(0o755)
    (bin_dir / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    (folder / "records").mkdir()
    return bin_dir.parent


def _node_sh_args(folder: Path, rank: int, port: int, recipe: str, accel: str, args, config="") -> list[str]:
    """The `accelerate` command line launch/node.sh runs on machine ``rank`` given what tests give it."""
    import os
    import subprocess

    from support.launch import NODE_SCRIPT, _clean_environ

    venv = folder / "venv"
    if not venv.exists():
        _recording_venv(folder)
    env = {**_clean_environ(), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "RECORD_DIR": str(folder / "records"), **node_env(rank, port, recipe, accel), "CONFIG": config}
    work = folder / f"work{rank}"
    work.mkdir(exist_ok=True)
    proc = subprocess.run(["bash", str(NODE_SCRIPT), *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return (folder / "records" / f"machine{rank}.args").read_text().splitlines()


@pytest.mark.parametrize("accel", [DDP, ZERO.format(2)])
def test_the_slurm_script_runs_node_sh_on_every_node_as_the_tests_do(accel, tmp_path):
    """What slurm_pretrain.sbatch makes each node launch is what the two-machine tests launch."""
    args = ["train.output_dir=/shared/run", "train.epochs=2"]
    port = free_port()
    venv = _recording_venv(tmp_path / "job")
    machines, job, job_log = slurm_job(tmp_path / "job", {
        "VENV": str(venv), "RECORD_DIR": str(tmp_path / "job" / "records"), "RECIPE": "finetune", "CONFIG": "",
        "ACCEL_CONFIG": accel, "GPUS_PER_NODE": "1", "MAIN_PORT": str(port), "EXTRA": " ".join(args)})
    assert job.returncode == 0, job_log + machines[0].log + machines[1].log
    for rank in (0, 1):
        from_slurm = (tmp_path / "job" / "records" / f"machine{rank}.args").read_text().splitlines()
        direct = _node_sh_args(tmp_path / "direct", rank, port, "finetune", accel, args)
        assert from_slurm == direct
        expected = ["launch", "--config_file", str(ROOT / accel), "--num_machines", "2", "--num_processes", "2",
                    "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
        if accel != DDP:
            expected += ["--deepspeed_config_file", str(ROOT / "configs" / "deepspeed" / "zero2.json"),
                         "--deepspeed_multinode_launcher", "standard"]
        assert direct == [*expected, "-m", "clipbert_emo.cli", "finetune", "-q", "-v", *args]


def _readme_commands(start: str) -> list[list[str]]:
    """The commands of launch/README.md that begin with ``start`` (continuation lines joined), as arguments."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "launch" / "README.md").read_text())
    return [shlex.split(line.split("#")[0]) for line in text.splitlines() if line.strip().startswith(start)]


@pytest.mark.parametrize("accel", [DDP, ZERO.format(2)])
def test_launch_readme_shows_what_node_sh_runs(accel, tmp_path):
    """launch/README.md's two-machine CPU example: its node.sh line, run, gives the accelerate command the README
    says it runs; and it is the tests' launch (support.launch.node_env) but for the port and the config."""
    node_lines = [cmd for cmd in _readme_commands("CUDA_VISIBLE_DEVICES= NUM_MACHINES=2") if "launch/node.sh" in cmd]
    assert len(node_lines) == 1
    line = node_lines[0]
    settings = dict(word.split("=", 1) for word in line[:line.index("launch/node.sh")])
    del settings["CUDA_VISIBLE_DEVICES"]
    assert {**settings, "ACCEL_CONFIG": accel} == {**node_env(0, 29500, "finetune", accel),
                                                  "CONFIG": "configs/synthemo_cpu.yaml"}
    recipe_args = line[line.index("launch/node.sh") + 1:]
    ran = _node_sh_args(tmp_path, 0, 29500, "finetune", accel, recipe_args, config=settings["CONFIG"])
    # node.sh makes the repository's paths absolute; the README shows them from the repository root
    documented = [cmd for cmd in _readme_commands(f"accelerate launch --config_file {accel}") if "127.0.0.1" in cmd]
    assert documented == [["accelerate", *(a.replace(f"{ROOT}/", "") for a in ran)]]


def test_log_lines_name_the_rank_and_machine_under_a_launcher():
    import logging

    from clipbert_emo.cli import log_format

    record = logging.LogRecord("clipbert_emo.train.engine", logging.INFO, __file__, 1, "epoch %d", (2,), None)
    one = logging.Formatter(log_format({"WORLD_SIZE": "1"})).format(record)
    assert one == "INFO clipbert_emo.train.engine: epoch 2"
    env = {"WORLD_SIZE": "16", "RANK": "9", "LOCAL_RANK": "1", "GROUP_RANK": "1"}
    line = logging.Formatter(log_format(env)).format(record)
    assert re.fullmatch(r"INFO \[rank 9/16 node 1 \S+ local 1\] clipbert_emo\.train\.engine: epoch 2", line), line


# --- the trainings (slow set) ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ddp_finetune_on_two_machines_resumes_exactly_after_one_is_killed(synthemo_dir, tmp_path):
    kill_and_resume(tmp_path, "finetune", lambda out: finetune_args(synthemo_dir, out), DDP, at_step=3)


@pytest.mark.slow
def test_zero2_finetune_on_two_machines_resumes_exactly_after_one_is_killed(synthemo_dir, tmp_path, extensions):
    # killed after the last step of epoch 1, before the epoch's end: the resumed run trains no batch of epoch 1
    # and still reports its training loss (the killed run's batches, saved in last/)
    kill_and_resume(tmp_path, "finetune", lambda out: finetune_args(synthemo_dir, out), ZERO.format(2), at_step=2,
                    extensions=extensions)


@pytest.mark.slow
def test_zero3_finetune_on_two_machines_resumes_exactly_after_one_is_killed(synthemo_dir, tmp_path, extensions):
    kill_and_resume(tmp_path, "finetune", lambda out: finetune_args(synthemo_dir, out), ZERO.format(3), at_step=3,
                    extensions=extensions)


@pytest.mark.slow
def test_pretraining_on_two_machines_from_the_slurm_script(pairs_dir, tmp_path):
    """The batch script itself, as SLURM runs it for a 2-node job (stand-ins for srun and scontrol)."""
    out = tmp_path / "out"
    machines, job, job_log = slurm_job(tmp_path, {
        "RECIPE": "pretrain", "CONFIG": "", "GPUS_PER_NODE": "1", "MAIN_PORT": str(free_port()),
        "EXTRA": " ".join(pretrain_args(pairs_dir, out))})
    assert job.returncode == 0, job_log[-3000:] + machines[0].log[-3000:] + machines[1].log[-3000:]
    m = check_run(machines, out, steps=4, last_saves=6)
    assert {"train_loss_mlm", "train_loss_itm", "val_mlm_accuracy", "val_itm_accuracy"} <= set(m["history"][-1])
    assert machines[0].log.count("pretrained on") == 1 and "pretrained on" not in machines[1].log


@pytest.mark.slow
def test_zero2_pretraining_on_two_machines(pairs_dir, tmp_path, extensions):
    out = tmp_path / "out"
    machines, _ = two_machines(tmp_path, "pretrain", pretrain_args(pairs_dir, out), ZERO.format(2),
                               extensions=extensions)
    check_run(machines, out, steps=4, last_saves=6, zero=2)
