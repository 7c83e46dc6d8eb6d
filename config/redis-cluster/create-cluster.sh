#!/bin/sh
# Forms the Redis Cluster of docker-compose.yml's `cluster` profile, once (the
# `redis-cluster-init` service runs it on every `up`; tests/deploy runs it against local nodes).
#
#   REDIS_CLUSTER_NODES     host:port of every node, space or comma separated (required)
#   REDIS_CLUSTER_REPLICAS  replicas per master (default 1: six nodes = 3 masters + 3 replicas)
#   REDIS_CLUSTER_TIMEOUT   seconds to wait for the nodes, then for cluster_state:ok (default 60)
#   REDISCLI_AUTH           the nodes' password, if they have one (read by redis-cli itself)
#
# Idempotent, and it never destroys data:
#   - every node empty (knows only itself, no slots): `redis-cli --cluster create`, then wait for ok;
#   - a node already serves all 16384 slots: the cluster exists (a restart); wait for ok, exit 0,
#     and name any empty node left outside it (a lost volume) with the command that adds it;
#   - anything else (some nodes joined, no complete cluster): refuse with exit 1, change nothing.
set -eu

nodes=$(printf '%s' "${REDIS_CLUSTER_NODES:?name every node: REDIS_CLUSTER_NODES=host:port ...}" | tr ',' ' ')
replicas=${REDIS_CLUSTER_REPLICAS:-1}
timeout=${REDIS_CLUSTER_TIMEOUT:-60}

log() { echo "create-cluster: $*"; }

cli() {
    node=$1
    shift
    redis-cli -h "${node%:*}" -p "${node##*:}" "$@"
}

# One field of CLUSTER INFO ("" when the node does not answer or has cluster support disabled).
info_field() {
    cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

wait_for_nodes() {
    waited=0
    for node in $nodes; do
        until [ "$(cli "$node" ping 2>/dev/null | tr -d '\r')" = PONG ]; do
            if [ "$waited" -ge "$timeout" ]; then
                log "$node does not answer PING after ${timeout}s"
                exit 1
            fi
            sleep 1
            waited=$((waited + 1))
        done
    done
}

# Until every node of $1 says cluster_state:ok (slot maps agree, every shard has a master).
wait_for_ok() {
    waited=0
    for node in $1; do
        until [ "$(info_field "$node" cluster_state)" = ok ]; do
            if [ "$waited" -ge "$timeout" ]; then
                log "$node is not cluster_state:ok after ${timeout}s:"
                cli "$node" cluster info || true
                exit 1
            fi
            sleep 1
            waited=$((waited + 1))
        done
    done
}

wait_for_nodes
formed=""
empty=""
other=""
for node in $nodes; do
    enabled=$(cli "$node" info cluster | tr -d '\r' | sed -n 's/^cluster_enabled://p')
    if [ "$enabled" != 1 ]; then
        log "$node is not cluster-enabled (cluster-enabled yes in its configuration)"
        exit 1
    fi
    if [ "$(info_field "$node" cluster_slots_assigned)" = 16384 ]; then
        formed="$formed $node"
    elif [ "$(info_field "$node" cluster_known_nodes)" = 1 ] && [ "$(cli "$node" dbsize | tr -d '\r')" = 0 ]; then
        empty="$empty $node"
    else
        other="$other $node"
    fi
done

if [ -z "$formed" ] && [ -z "$other" ]; then
    log "every node is empty: creating the cluster ($replicas replica(s) per master)"
    # shellcheck disable=SC2086 # one argument per node
    redis-cli --cluster create $nodes --cluster-replicas "$replicas" --cluster-yes
    wait_for_ok "$nodes"
    log "cluster created"
    exit 0
fi

if [ -z "$formed" ]; then
    log "no complete cluster, but these nodes are not empty:$other"
    log "refusing to guess: inspect them with redis-cli --cluster check HOST:PORT; to start over,"
    log "run FLUSHALL and CLUSTER RESET HARD on every node (their data is lost), then run this again"
    exit 1
fi

log "the cluster exists (all 16384 slots assigned on$formed); not creating it again"
wait_for_ok "$formed$other"
first=${formed# }
first=${first%% *}
for node in $empty; do
    log "WARNING: $node is empty and outside the cluster (a lost volume?); to add it as a replica:"
    log "  redis-cli --cluster add-node $node $first --cluster-slave"
done
log "cluster ok"
