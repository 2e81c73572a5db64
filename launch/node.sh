#!/bin/bash
# One machine's part of a multi-machine run: starts `accelerate launch` for this machine, which forks one
# training process per GPU (per slot). Run it on every machine at about the same time, each with its own
# MACHINE_RANK; slurm_pretrain.sbatch does that through srun, and tests/test_multinode.py does it with two
# "machines" on one host (two launchers, each in its own working folder, HOME and TMPDIR).
#
#   NUM_MACHINES=2 MACHINE_RANK=0 MAIN_IP=10.0.0.1 RECIPE=finetune CONFIG=configs/clipbert_base.yaml \
#       launch/node.sh data.train_manifest=...          # on 10.0.0.1
#   NUM_MACHINES=2 MACHINE_RANK=1 MAIN_IP=10.0.0.1 RECIPE=finetune CONFIG=configs/clipbert_base.yaml \
#       launch/node.sh data.train_manifest=...          # on the second machine
#
# Settings (environment variables):
#   NUM_MACHINES    machines in the run (default 1)
#   MACHINE_RANK    this machine's index, 0 .. NUM_MACHINES-1; 0 hosts rank 0 (default 0)
#   MAIN_IP         an address of machine 0 that every machine reaches (required when NUM_MACHINES > 1)
#   MAIN_PORT       a free TCP port on machine 0 (default 29500)
#   GPUS_PER_NODE   processes per machine (default 8); NUM_PROCESSES = NUM_MACHINES x GPUS_PER_NODE
#   RECIPE          finetune | pretrain (default pretrain)
#   CONFIG          experiment config, a path or a shipped config's name ("" = the built-in defaults)
#   ACCEL_CONFIG    launcher file (default launch/accelerate_multi_node.yaml: DDP);
#                   launch/accelerate_deepspeed_zero{1,2,3}.yaml for DeepSpeed ZeRO
# Arguments: more for the recipe (config overrides such as train.output_dir=..., --resume).
#
# Relative paths (CONFIG, ACCEL_CONFIG and the DeepSpeed JSON it names) are read from the folder the script
# starts in where they exist there, else from the repository root, so a machine may start in any folder.
# Everything a run writes goes to train.output_dir (absolute, on a file system every machine shares); only the
# main process (rank 0, on machine 0) writes checkpoint/, last/ and metrics.json, and under DeepSpeed each rank
# writes its own shards into deepspeed_state/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NUM_MACHINES=${NUM_MACHINES:-1}
MACHINE_RANK=${MACHINE_RANK:-0}
MAIN_IP=${MAIN_IP:-}
MAIN_PORT=${MAIN_PORT:-29500}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
NUM_PROCESSES=$((NUM_MACHINES * GPUS_PER_NODE))
RECIPE=${RECIPE:-pretrain}
CONFIG=${CONFIG-configs/pretrain_coco_vg.yaml}
ACCEL_CONFIG=${ACCEL_CONFIG:-launch/accelerate_multi_node.yaml}

if [ "$NUM_MACHINES" -gt 1 ] && [ -z "$MAIN_IP" ]; then
  echo "launch/node.sh: set MAIN_IP to an address of machine 0 (NUM_MACHINES=$NUM_MACHINES)" >&2
  exit 2
fi
MAIN_IP=${MAIN_IP:-127.0.0.1}

# a relative path: from this folder if it is there, else from the repository root
absolute() { case $1 in /*) echo "$1" ;; *) if [ -e "$1" ]; then echo "$PWD/$1"; else echo "$ROOT/$1"; fi ;; esac; }
ACCEL_CONFIG=$(absolute "$ACCEL_CONFIG")

launcher=(--config_file "$ACCEL_CONFIG" --num_machines "$NUM_MACHINES" --num_processes "$NUM_PROCESSES"
          --machine_rank "$MACHINE_RANK" --main_process_ip "$MAIN_IP" --main_process_port "$MAIN_PORT")
ds_json=$(sed -n "s/^[[:space:]]*deepspeed_config_file:[[:space:]]*['\"]\{0,1\}\([^'\"#[:space:]]*\).*/\1/p" \
          "$ACCEL_CONFIG" | head -n 1)
if [ -n "$ds_json" ]; then
  # "standard": every machine starts its own processes (torchrun's rendezvous), as for DDP; accelerate's
  # default for several machines is DeepSpeed's pdsh launcher, which ssh-es into the hosts of a hostfile.
  launcher+=(--deepspeed_config_file "$(absolute "$ds_json")" --deepspeed_multinode_launcher standard)
fi
recipe=("$RECIPE" -q -v)
if [ -n "$CONFIG" ]; then
  case $CONFIG in *.yaml | *.yml) CONFIG=$(absolute "$CONFIG") ;; esac
  recipe+=(--config "$CONFIG")
fi

exec accelerate launch "${launcher[@]}" -m clipbert_emo.cli "${recipe[@]}" "$@"
