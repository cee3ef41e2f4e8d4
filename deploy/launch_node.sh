#!/usr/bin/env bash
# One node's share of a multi-node LLM run: the `deepspeed` launcher without SSH (--no_ssh), started on
# every node by deploy/slurm_train.sbatch through srun, or by hand on each node. It starts one training
# process per GPU of its node; the ranks meet at MASTER_ADDR:MASTER_PORT (the first node).
#   deploy/launch_node.sh --config C --data TOKENS --out RUN [key=value ...]
# Under SLURM it reads SLURM_NNODES, SLURM_NODEID and SLURM_JOB_NODELIST; elsewhere set NODE_LIST (the
# nodes' names, first = node 0, separated by spaces or commas) and NODE_RANK (this node's place in it).
# MASTER_ADDR (default: the first node), MASTER_PORT (29500), GPUS_PER_NODE (8) and VENV (.venv, activated
# when it exists) may be set on every node alike.
set -euo pipefail

if [[ -z "${NODE_LIST:-}" ]]; then
  NODE_LIST=$(scontrol show hostnames "${SLURM_JOB_NODELIST:?set NODE_LIST and NODE_RANK, or run under SLURM}")
fi
read -r -a NODES <<< "$(echo "$NODE_LIST" | tr ',\n' '  ')"
NODE_RANK=${NODE_RANK:-${SLURM_NODEID:?set NODE_RANK (this node is number NODE_RANK in NODE_LIST)}}
if [[ -n "${SLURM_NNODES:-}" && "$SLURM_NNODES" != "${#NODES[@]}" ]]; then
  echo "launch_node.sh: SLURM_NNODES=$SLURM_NNODES but the node list names ${#NODES[@]} nodes" >&2
  exit 2
fi
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
MASTER_ADDR=${MASTER_ADDR:-${NODES[0]}}
MASTER_PORT=${MASTER_PORT:-29500}
VENV=${VENV:-.venv}
if [[ -f "$VENV/bin/activate" ]]; then
  source "$VENV/bin/activate"
fi

# the launcher's hostfile: which nodes there are and how many ranks each runs (ranks are numbered node by node)
HOSTFILE=$(mktemp "${TMPDIR:-/tmp}/videopoet-hostfile.XXXXXX")
trap 'rm -f "$HOSTFILE"' EXIT
for node in "${NODES[@]}"; do
  echo "$node slots=$GPUS_PER_NODE" >> "$HOSTFILE"
done

status=0
deepspeed --hostfile "$HOSTFILE" --no_ssh --node_rank "$NODE_RANK" \
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
  --module videopoet.llm.train "$@" || status=$?

if [[ $status -ne 0 ]]; then
  first=$((NODE_RANK * GPUS_PER_NODE)); last=$((first + GPUS_PER_NODE - 1)); world=$((${#NODES[@]} * GPUS_PER_NODE))
  ranks=$([[ $first -eq $last ]] && echo "rank $first" || echo "ranks $first-$last")
  echo "videopoet launch: node $NODE_RANK (${NODES[$NODE_RANK]}; $ranks of $world) failed with exit status $status" >&2
fi
exit $status
