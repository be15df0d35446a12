#!/bin/bash
# A real single-node Slurm on this machine for the slow Slurm test (make test-slurm):
# Debian's slurm-wlm and munge, installed when missing, configured in $STATE (no file
# under /etc/slurm is written), controller and node daemons started here. Needs root:
# slurmd starts jobs as their users. Prints `export SLURM_CONF=...` for the clients.
# tests/slurm/stop.sh tears it down.
set -euo pipefail
STATE=${SLURM_TEST_STATE:-/tmp/ablation-slurm}
if [ "$(id -u)" != 0 ]; then
    echo "error: bringing up slurmd needs root, found uid $(id -u): run make test-slurm as root (or in a container)." >&2
    exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
mkdir -p "$STATE/ctld" "$STATE/d" /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge: /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    touch "$STATE/munged-started-here"
fi

HOST=$(hostname -s)
CPUS=${SLURM_TEST_CPUS:-2}
# leave 1 GiB to the system
MEMORY=$(($(awk '/^MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024))
cat > "$STATE/slurm.conf" <<CONF
ClusterName=ablation-test
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
# a requeued task's old processes get SIGKILL this soon after SIGTERM
KillWait=5
MinJobAge=3600
NodeName=$HOST CPUs=$CPUS RealMemory=$MEMORY State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$STATE/slurm.conf
/usr/sbin/slurmctld -f "$SLURM_CONF"
/usr/sbin/slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 1
done
echo "error: the Slurm node did not come up within 60 s: expected sinfo to show it idle; see $STATE/slurmctld.log and $STATE/slurmd.log." >&2
exit 1
