#!/usr/bin/env bash
# A throwaway single-node SLURM cluster on this host, for the `slurm` tests (tests/test_slurm.py) and for trying
# the SLURM profile (workflow/profiles/slurm) without a real cluster.
#
#   bash scripts/local_slurm.sh start  [STATE_DIR]   # munged + slurmctld + slurmd; waits until the node is idle
#   bash scripts/local_slurm.sh status [STATE_DIR]   # daemons and `sinfo`; exit 1 if the cluster is not up
#   bash scripts/local_slurm.sh stop   [STATE_DIR]   # kills the three daemons, deletes what `start` created
#
# STATE_DIR (default /tmp/unsamv2-slurm) holds everything: munge key/socket, slurm.conf, state, spool, logs, pids.
# Client commands (sinfo, sbatch, squeue, snakemake --executor slurm) find this cluster through SLURM_CONF:
#   export SLURM_CONF=STATE_DIR/slurm/slurm.conf      (or: source STATE_DIR/env.sh)
# `start` also links /run/slurm/conf -> STATE_DIR/slurm (removed by `stop`): inside a job, the `srun` that
# snakemake-executor-plugin-slurm-jobstep (0.6.1) runs gets an environment with every SLURM_* variable removed,
# SLURM_CONF included, and then libslurm looks for /etc/slurm/slurm.conf and next /run/slurm/conf/slurm.conf
# (the configless-mode cache location). Without the link that srun fails with "Could not establish a
# configuration source".
# Ports: SLURMCTLD_PORT (default 6817) and SLURMD_PORT (default 6818) may be overridden in the environment.
#
# Needs root (slurmd launches jobs as the submitting user; SlurmUser=root keeps it to a single user) and the Debian
# packages slurm-wlm and munge (slurm-wlm 22.05 and munge 0.5.15 were used when this was written).
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|status [STATE_DIR]" >&2
  exit 2
}

[ "$#" -ge 1 ] && [ "$#" -le 2 ] || usage
ACTION=$1
STATE_DIR=${2:-/tmp/unsamv2-slurm}
# Absolute paths: slurm.conf and the daemons' pid files must not depend on the caller's working directory.
# (Only `start` creates STATE_DIR; `status` and `stop` on a missing one just report / do nothing.)
[ "$ACTION" != start ] || mkdir -p "$STATE_DIR"
[ ! -d "$STATE_DIR" ] || STATE_DIR=$(cd "$STATE_DIR" && pwd)

MUNGE_DIR=$STATE_DIR/munge
SLURM_DIR=$STATE_DIR/slurm
CONF=$SLURM_DIR/slurm.conf
MUNGE_SOCKET=$MUNGE_DIR/munge.socket.2
MUNGE_PID=$MUNGE_DIR/munged.pid
CTLD_PID=$SLURM_DIR/run/slurmctld.pid
SLURMD_PID=$SLURM_DIR/run/slurmd.pid
CTLD_LOG=$SLURM_DIR/log/slurmctld.log
SLURMD_LOG=$SLURM_DIR/log/slurmd.log
MUNGE_LOG=$MUNGE_DIR/munged.log
# Compiled into libslurm (present in this host's slurm-wlm 22.05.8): the second place clients look for a
# config when SLURM_CONF is unset (after /etc/slurm/slurm.conf).
RUN_CONF_LINK=/run/slurm/conf
SLURMCTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
START_TIMEOUT_S=${START_TIMEOUT_S:-60}
# slurmd names its node after the short host name; slurm.conf must use the same one.
NODE=$(hostname -s)

# The daemons are found in /usr/sbin, which is not on every user's PATH.
export PATH=$PATH:/usr/sbin:/sbin
# Every slurm command below (and every client the caller runs after `source env.sh`) reads this config.
export SLURM_CONF=$CONF

# pid from a pid file if that process is alive, else nothing.
alive_pid() {
  local file=$1 pid
  [ -s "$file" ] || return 1
  pid=$(cat "$file")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

log_tails() {
  for log in "$MUNGE_LOG" "$CTLD_LOG" "$SLURMD_LOG"; do
    echo "----- last lines of $log -----" >&2
    tail -n 25 "$log" >&2 2>/dev/null || echo "(no log)" >&2
  done
}

die() {
  echo "local_slurm.sh: ERROR: $*" >&2
  log_tails
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "local_slurm.sh: ERROR: '$1' not found (apt-get install slurm-wlm munge)" >&2; exit 1; }
}

port_in_use() {
  # ss lists listening TCP sockets; a port held by anything else would make our daemon fail to bind.
  ss -ltnH "sport = :$1" 2>/dev/null | grep -q .
}

start_munge() {
  if alive_pid "$MUNGE_PID" >/dev/null; then
    return 0
  fi
  # A private key, socket, pid, seed and log: independent of (and never disturbing) a system munged on
  # /run/munge. munged refuses a key that others can read, or one in a directory that others can write.
  mkdir -p "$MUNGE_DIR"
  # 755: clients of other users must reach the socket; the key itself stays 400 (root only).
  chmod 755 "$MUNGE_DIR"
  if [ ! -s "$MUNGE_DIR/munge.key" ]; then
    mungekey --create --keyfile="$MUNGE_DIR/munge.key"
  fi
  chmod 400 "$MUNGE_DIR/munge.key"
  # Unix socket paths are limited to 107 bytes; fail here rather than with an obscure bind error.
  [ "${#MUNGE_SOCKET}" -lt 100 ] || die "STATE_DIR is too long for a unix socket path: $MUNGE_SOCKET"
  # --force: run as root and accept a state dir below a world-writable /tmp (sticky bit) — fine for a test.
  munged --force --socket="$MUNGE_SOCKET" --key-file="$MUNGE_DIR/munge.key" --pid-file="$MUNGE_PID" \
    --log-file="$MUNGE_LOG" --seed-file="$MUNGE_DIR/munged.seed" \
    || die "munged did not start"
  # munged forks and writes its pid file; check that credentials round-trip through our socket.
  for _ in $(seq 1 50); do
    if munge --socket="$MUNGE_SOCKET" -n 2>/dev/null | unmunge --socket="$MUNGE_SOCKET" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  die "munged is not answering on $MUNGE_SOCKET"
}

write_conf() {
  mkdir -p "$SLURM_DIR"/{ctld,d,log,run}
  # CPUs, topology and memory exactly as slurmd measures them (`slurmd -C`): if slurm.conf claimed more, slurmd
  # would register with less and slurmctld would drain the node ("Low RealMemory" / "Low socket*core count").
  local hw cpus sockets cores threads mem
  hw=$(slurmd -C | head -n 1)
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
  sockets=$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$hw")
  cores=$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$hw")
  threads=$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$hw")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  [ -n "$cpus" ] && [ -n "$mem" ] || die "could not read CPUs/RealMemory from 'slurmd -C': $hw"
  # No SPANK plugins: the system plugstack.conf (if any) belongs to the system cluster, not to this one.
  : >"$SLURM_DIR/plugstack.conf"
  cat >"$CONF" <<EOF
# Written by scripts/local_slurm.sh: a throwaway single-node cluster for tests. Do not use in production.
ClusterName=unsamv2test
SlurmctldHost=$NODE
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
# One user (root) runs everything; no privilege separation needed for a test cluster.
SlurmUser=root
SlurmdUser=root
# Private munge daemon (see start_munge); the cred plugin signs job credentials through the same socket.
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
# All state under STATE_DIR so that nothing in /var or /etc is touched.
StateSaveLocation=$SLURM_DIR/ctld
SlurmdSpoolDir=$SLURM_DIR/d
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
PlugStackConfig=$SLURM_DIR/plugstack.conf
# No cgroups in containers/VMs used for tests: track processes via /proc and do not bind tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
# Cores and memory are consumable, so --cpus-per-task and --mem requests are honoured and packed.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# No slurmdbd: no accounting, so sacct has nothing; job states come from squeue instead.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue keeps finished jobs (and their final state) for 10 minutes: snakemake-executor-plugin-slurm polls with
# squeue only if MinJobAge >= 3x its first status-check delay, otherwise it falls back to sacct (which fails here).
MinJobAge=600
# A node that was down (e.g. after stop/start) comes back by itself once slurmd registers with valid resources.
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus SocketsPerBoard=${sockets:-1} CoresPerSocket=${cores:-$cpus} ThreadsPerCore=${threads:-1} RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  # For the caller: `source STATE_DIR/env.sh` points every slurm client at this cluster.
  echo "export SLURM_CONF=$CONF" >"$STATE_DIR/env.sh"
}

link_run_conf() {
  # See the header: nested srun calls (jobstep plugin) find this cluster only through this link.
  if [ -e /etc/slurm/slurm.conf ]; then
    die "/etc/slurm/slurm.conf exists: srun inside jobs would use that cluster, not this one"
  fi
  if [ -L "$RUN_CONF_LINK" ]; then
    local target
    target=$(readlink "$RUN_CONF_LINK")
    # Ours, or left behind by a test cluster that was killed without `stop` (its slurm.conf is gone): reuse.
    if [ "$target" != "$SLURM_DIR" ] && [ -e "$target/slurm.conf" ]; then
      die "$RUN_CONF_LINK points to another cluster's config ($target); stop that one first"
    fi
  elif [ -e "$RUN_CONF_LINK" ]; then
    die "$RUN_CONF_LINK exists (a configless slurmd on this host?); cannot point it at this cluster"
  fi
  mkdir -p "$(dirname "$RUN_CONF_LINK")"
  ln -sfn "$SLURM_DIR" "$RUN_CONF_LINK"
}

node_state() {
  sinfo --noheader --nodes="$NODE" --format=%t 2>/dev/null | head -n 1
}

cmd_start() {
  need slurmctld; need slurmd; need munged; need mungekey; need sinfo
  [ "$(id -u)" -eq 0 ] || { echo "local_slurm.sh: ERROR: must run as root (slurmd launches jobs)" >&2; exit 1; }
  start_munge
  # Idempotent: a running cluster from this STATE_DIR is reused as is (only the idle wait below is repeated).
  if ! alive_pid "$CTLD_PID" >/dev/null; then
    port_in_use "$SLURMCTLD_PORT" && die "port $SLURMCTLD_PORT is taken (another slurmctld?); set SLURMCTLD_PORT"
    write_conf
    link_run_conf
    # -c: start from a clean state (no jobs or node states left from an earlier run in this STATE_DIR).
    slurmctld -c -f "$CONF" || die "slurmctld did not start"
  fi
  if ! alive_pid "$SLURMD_PID" >/dev/null; then
    port_in_use "$SLURMD_PORT" && die "port $SLURMD_PORT is taken (another slurmd?); set SLURMD_PORT"
    slurmd -f "$CONF" || die "slurmd did not start"
  fi
  # The node is usable once slurmd has registered and slurmctld shows it idle (or mixed/allocated when reused).
  local state=""
  for _ in $(seq 1 "$START_TIMEOUT_S"); do
    state=$(node_state || true)
    case "$state" in
      idle | mix | alloc)
        echo "local_slurm.sh: cluster up (node $NODE $state); export SLURM_CONF=$CONF"
        return 0
        ;;
    esac
    alive_pid "$CTLD_PID" >/dev/null || die "slurmctld exited during start"
    alive_pid "$SLURMD_PID" >/dev/null || die "slurmd exited during start"
    sleep 1
  done
  die "node $NODE not idle after ${START_TIMEOUT_S}s (state: '${state:-unknown}'; sinfo: $(sinfo -R 2>&1 | tail -n 1))"
}

stop_daemon() {
  local name=$1 file=$2 pid
  pid=$(alive_pid "$file") || return 0
  kill "$pid"
  # Wait for a clean exit (slurmctld saves state); SIGKILL if it hangs.
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "local_slurm.sh: $name ($pid) did not stop; killing" >&2
  kill -9 "$pid" 2>/dev/null || true
}

cmd_stop() {
  # Jobs still running belong to this cluster: cancel them so that their processes do not outlive it.
  if alive_pid "$CTLD_PID" >/dev/null; then
    scancel "--user=$(id -un)" 2>/dev/null || true
  fi
  stop_daemon slurmd "$SLURMD_PID"
  stop_daemon slurmctld "$CTLD_PID"
  stop_daemon munged "$MUNGE_PID"
  if [ -L "$RUN_CONF_LINK" ] && [ "$(readlink "$RUN_CONF_LINK")" = "$SLURM_DIR" ]; then
    rm -f "$RUN_CONF_LINK"
    rmdir "$(dirname "$RUN_CONF_LINK")" 2>/dev/null || true
  fi
  # Delete only what `start` creates, never STATE_DIR's other contents (the caller may have passed any dir).
  rm -rf "$SLURM_DIR" "$MUNGE_DIR" "$STATE_DIR/env.sh"
  rmdir "$STATE_DIR" 2>/dev/null || true
  echo "local_slurm.sh: stopped"
}

cmd_status() {
  local ok=0 name file pid
  for name in munged slurmctld slurmd; do
    case $name in
      munged) file=$MUNGE_PID ;;
      slurmctld) file=$CTLD_PID ;;
      slurmd) file=$SLURMD_PID ;;
    esac
    if pid=$(alive_pid "$file"); then
      echo "$name: running (pid $pid)"
    else
      echo "$name: not running"
      ok=1
    fi
  done
  if [ "$ok" -eq 0 ]; then
    sinfo || ok=1
  fi
  return "$ok"
}

case "$ACTION" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) usage ;;
esac
