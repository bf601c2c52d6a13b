#!/usr/bin/env bash
# Crash injection over a relayed network, short version (issue #7 item 1;
# R-SUP-7, R-SUP-8, R-REL-1, R-REL-2, R-LC-1, R-LC-2): tests/fault/crash.sh
# on Figure 4 for 4 rounds (node1, node2 - the relay node -, node3, the
# simulator or the controller killed with SIGKILL at a random moment under
# enc/dec load between sae-1 and sae-3, restarted, invariants - the
# life-cycle records at the manager and its audit among them - checked after
# every round and at the end).
# The seed is random unless SEED is set; crash.sh prints it first, and a
# failure names it: SEED=S tests/system/test_crash_relay.sh replays the run.
# `make soak ROUNDS=N [SEED=S]` runs the same driver long.
set -eu
SEED=${SEED:-$(( $(od -An -N2 -tu2 /dev/urandom) % 32768 ))}
echo "# test_crash_relay: SEED=$SEED ROUNDS=4"
SEED=$SEED ROUNDS=4 TOPOLOGY=${TOPOLOGY:-figure4} exec bash "$(dirname "$0")/../fault/crash.sh"
