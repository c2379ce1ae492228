#!/usr/bin/env bash
# Removes what a killed netns test run left behind: every namespace named vx-RUNID-*, after stopping (by PID) the
# processes inside them. Only the given run's namespaces are touched; the run id is printed by NetnsTopology
# ("NetnsTopology: run id 1a2b3c ...") and appears in every namespace name.
#
#   tools/netns-cleanup.sh 1a2b3c      clean run 1a2b3c
#   tools/netns-cleanup.sh --list      list vx-* namespaces (all runs) without touching anything
set -euo pipefail

usage() { echo "usage: $0 RUNID | --list" >&2; exit 2; }
[[ $# -eq 1 ]] || usage

if [[ "$1" == "--list" ]]; then
    ip netns list | awk '{print $1}' | grep '^vx-' || true
    exit 0
fi

run_id=$1
# Run ids are short lowercase hex (NetnsEnvironment.newRunID); refusing anything else keeps a typo such as "" or
# "*" from matching other runs' namespaces.
[[ "$run_id" =~ ^[0-9a-z]{1,12}$ ]] || { echo "netns-cleanup: bad run id '$run_id'" >&2; usage; }
prefix="vx-${run_id}-"

mapfile -t namespaces < <(ip netns list | awk -v p="$prefix" 'index($1, p) == 1 {print $1}')
if [[ ${#namespaces[@]} -eq 0 ]]; then
    echo "netns-cleanup: no namespaces for run $run_id"
else
    for ns in "${namespaces[@]}"; do
        # Processes in our namespaces were started by that test run; they would keep the namespace alive.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -TERM "$pid" 2>/dev/null || true
        done
    done
    sleep 1
    for ns in "${namespaces[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        ip netns del "$ns" && echo "netns-cleanup: deleted $ns"
    done
fi
rm -rf "${TMPDIR:-/tmp}/vx-${run_id}"
