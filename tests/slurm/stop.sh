#!/bin/bash
# Tear down what tests/slurm/start.sh started: the daemons and the database by their pid files
# (munged too when start.sh started it), then the state folder.
STATE=${SLURM_TEST_STATE:-/tmp/ablation-slurm}
for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/slurmdbd.pid" "$STATE/mysql.pid"; do
    if [ -s "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null
    fi
done
sleep 2
if [ -e "$STATE/munged-started-here" ] && [ -s /run/munge/munged.pid ]; then
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null
fi
rm -rf "$STATE"
