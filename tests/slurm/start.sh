#!/bin/bash
# A real single-node Slurm on this machine for the slow Slurm test (make test-slurm):
# Debian's slurm-wlm and munge (with slurmdbd and MariaDB, so that sacct answers),
# installed when missing, configured in $STATE (no file under /etc/slurm is written),
# database, accounting, controller and node daemons started here. Needs root:
# slurmd starts jobs as their users. Prints `export SLURM_CONF=...` for the clients.
# tests/slurm/stop.sh tears it down.
set -euo pipefail
STATE=${SLURM_TEST_STATE:-/tmp/ablation-slurm}
if [ "$(id -u)" != 0 ]; then
    echo "error: bringing up slurmd needs root, found uid $(id -u): run make test-slurm as root (or in a container)." >&2
    exit 1
fi
for binary in slurmctld munged slurmdbd mariadbd; do
    if ! command -v "$binary" >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge slurmdbd \
            mariadb-server >/dev/null
        break
    fi
done
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

# The accounting database: a private MariaDB on 127.0.0.1:$DB_PORT.
DB_PORT=${SLURM_TEST_DB_PORT:-3306}
mariadb-install-db --datadir="$STATE/mysql" --user=root \
    --auth-root-authentication-method=socket >"$STATE/mysql-install.log" 2>&1
(mariadbd --datadir="$STATE/mysql" --user=root --socket="$STATE/mysql.sock" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$STATE/mysql.pid" \
    --log-error="$STATE/mysql.err" &)
for _ in $(seq 30); do [ -S "$STATE/mysql.sock" ] && break; sleep 1; done
mariadb -S "$STATE/mysql.sock" -e "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

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
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# a requeued task's old processes get SIGKILL this soon after SIGTERM
KillWait=5
MinJobAge=3600
NodeName=$HOST CPUs=$CPUS RealMemory=$MEMORY State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
# slurmdbd reads slurmdbd.conf beside slurm.conf; it holds a password, so mode 600.
cat > "$STATE/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 "$STATE/slurmdbd.conf"
export SLURM_CONF=$STATE/slurm.conf
/usr/sbin/slurmdbd
for _ in $(seq 30); do sacctmgr -i list cluster >/dev/null 2>&1 && break; sleep 1; done
sacctmgr -i add cluster ablation-test >/dev/null 2>&1 || true
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
