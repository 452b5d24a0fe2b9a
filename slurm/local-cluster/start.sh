#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine, from Debian's packages, for testing the
# `slurm` launcher for real: munged, slurmctld and slurmd on localhost, one node with this
# machine's CPUs and memory, one default partition `debug`.
#
#   sudo slurm/local-cluster/start.sh            # installs slurm-wlm + munge with apt-get if missing
#   source /tmp/zagreus-slurm/env.sh             # exports SLURM_CONF for sbatch/squeue/sinfo/...
#   slurm/local-cluster/stop.sh                  # stops the daemons (and cancels jobs)
#
# Everything (munge key and socket, slurm.conf, state, spool, pid files, logs) lives under
# $ZAGREUS_SLURM_DIR (default /tmp/zagreus-slurm); nothing under /etc is written. Idempotent:
# when this folder's cluster already runs and answers, it is left as is.
#
# Settings (environment): ZAGREUS_SLURM_DIR, ZAGREUS_SLURM_WAIT (seconds to wait for the node to
# be idle, default 60), ZAGREUS_SLURM_PORT (slurmctld's port, default 6817; slurmd uses the next),
# ZAGREUS_SLURM_NO_INSTALL=1 (fail instead of calling apt-get).
#
# A cluster of another shape, for `sbatch --test-only` only: ZAGREUS_SLURM_SHAPE=NODESxGPUS (e.g.
# 8x8) adds a partition ($ZAGREUS_SLURM_SHAPE_PARTITION, default `shape`) of that many powered-off
# cloud nodes (State=CLOUD) with that many GPUs each ($ZAGREUS_SLURM_SHAPE_CPUS CPUs, default 32;
# $ZAGREUS_SLURM_SHAPE_MEM_MB, default 512000). The scheduler plans jobs onto them, so
# `sbatch --test-only -p shape ...` answers as a real cluster of that shape would; a job really
# submitted there never starts (the nodes do not exist).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

WAIT_S="${ZAGREUS_SLURM_WAIT:-60}"
CTLD_PORT="${ZAGREUS_SLURM_PORT:-6817}"
SLURMD_PORT="$((CTLD_PORT + 1))"
NODE="$(hostname -s)"
SHAPE="${ZAGREUS_SLURM_SHAPE:-}"
SHAPE_PARTITION="${ZAGREUS_SLURM_SHAPE_PARTITION:-shape}"
SHAPE_CPUS="${ZAGREUS_SLURM_SHAPE_CPUS:-32}"
SHAPE_MEM_MB="${ZAGREUS_SLURM_SHAPE_MEM_MB:-512000}"
if [ -n "$SHAPE" ]; then
  [[ "$SHAPE" =~ ^([0-9]+)x([0-9]+)$ ]] || die "ZAGREUS_SLURM_SHAPE=$SHAPE: expected NODESxGPUS, e.g. 8x8"
  SHAPE_NODES="${BASH_REMATCH[1]}"; SHAPE_GPUS="${BASH_REMATCH[2]}"
  [[ "$SHAPE_PARTITION" =~ ^[A-Za-z0-9_.-]+$ ]] || die "ZAGREUS_SLURM_SHAPE_PARTITION=$SHAPE_PARTITION is not a partition name"
  [[ "$SHAPE_CPUS$SHAPE_MEM_MB" =~ ^[0-9]+$ ]] || die "ZAGREUS_SLURM_SHAPE_CPUS/_MEM_MB must be numbers"
fi
T0=$SECONDS

[ "$(id -u)" = 0 ] || die "run as root (sudo $0): munged and slurmd must run as root to start jobs"

mkdir -p "$DIR" "$MUNGE_DIR" "$RUN_DIR" "$LOG_DIR" "$STATE_DIR" "$SPOOL_DIR"
chmod 755 "$DIR"
chmod 755 "$MUNGE_DIR"   # the key itself is 0400; clients of any user need the socket

# ---------------------------------------------------------------- 1. packages
missing=()
for cmd in munged munge mungekey slurmctld slurmd sbatch squeue sinfo scontrol scancel sacct srun; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "${ZAGREUS_SLURM_NO_INSTALL:-0}" = 1 ] && die "missing ${missing[*]}; install them: apt-get install -y slurm-wlm munge"
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get here: install Slurm and munge by hand"
  say "installing slurm-wlm and munge with apt-get (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the packages' init scripts from starting system-wide daemons (there is no systemd here,
  # and a system munged/slurmctld would compete with ours): a policy-rc.d that says "no".
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  trap '[ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  if [ "$(apt-cache policy slurm-wlm munge 2>/dev/null | grep -c 'Candidate: [0-9]')" -lt 2 ]; then
    apt-get -q update >"$LOG_DIR/apt.log" 2>&1 || true
  fi
  apt_install() { apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$LOG_DIR/apt.log" 2>&1; }
  if ! apt_install; then
    # Stale package lists (a version the mirror no longer has): refresh them once and retry.
    apt-get -q update >>"$LOG_DIR/apt.log" 2>&1 || true
    if ! apt_install; then
      tail -n 30 "$LOG_DIR/apt.log" >&2
      die "apt-get install slurm-wlm munge failed (full log: $LOG_DIR/apt.log)"
    fi
  fi
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  trap - EXIT
  say "installed in $((SECONDS - T0))s: slurm $(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null)"
fi

# ---------------------------------------------------------------- 2. already running?
export SLURM_CONF="$CONF"

write_env() {
  cat >"$DIR/env.sh" <<EOF
# Point the Slurm client commands (sbatch, squeue, sinfo, scontrol, sacct, scancel, srun) at the
# local cluster started by slurm/local-cluster/start.sh:  source $DIR/env.sh
export SLURM_CONF=$CONF
EOF
}

node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n 1; }

print_usage() {
  say "cluster up in $((SECONDS - T0))s: node $NODE ($(sinfo -h -N -n "$NODE" -o '%c CPUs, %m MB, %T' 2>/dev/null)), partition debug"
  if [ -n "$SHAPE" ]; then
    say "partition $SHAPE_PARTITION: $SHAPE_NODES powered-off nodes x $SHAPE_GPUS GPUs (for sbatch --test-only -p $SHAPE_PARTITION only)"
  fi
  say "point the Slurm client at it:  export SLURM_CONF=$CONF   (or: source $DIR/env.sh)"
  say "stop it with: $HERE/stop.sh"
}

# render_conf CONF GRES: write slurm.conf (and gres.conf, empty without a shape) for this machine.
render_conf() {
  cpus="$(nproc)"
  mem_mb="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
  margin=$((mem_mb / 20)); [ "$margin" -lt 512 ] && margin=512   # 5%, at least 512 MB, for the OS
  real_mb=$((mem_mb - margin)); [ "$real_mb" -lt 256 ] && real_mb=256
  cat >"$1" <<EOF
# Single-node Slurm written by slurm/local-cluster/start.sh ($(date -u +%FT%TZ)). Regenerated at every start.
ClusterName=zagreus
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$PID_SLURMCTLD
SlurmdPidFile=$PID_SLURMD
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups on this machine: track processes through /proc, no task binding, no usage sampling.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct cannot answer; finished jobs stay in scontrol show job for MinJobAge seconds
# and are logged one line each to the jobcomp file.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.txt
MinJobAge=3600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
InactiveLimit=0
KillWait=10
SlurmctldTimeout=60
SlurmdTimeout=120
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus RealMemory=$real_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  : >"$2"
  if [ -n "$SHAPE" ]; then
    width=${#SHAPE_NODES}; [ "$width" -lt 2 ] && width=2
    last="$(printf "%0${width}d" "$SHAPE_NODES")"; first="$(printf "%0${width}d" 1)"
    shape_nodes="shape[$first-$last]"
    gres=""; [ "$SHAPE_GPUS" -gt 0 ] && gres=" Gres=gpu:$SHAPE_GPUS"
    cat >>"$1" <<EOF
# ZAGREUS_SLURM_SHAPE=$SHAPE: nodes that do not exist (powered-off cloud nodes), for sbatch --test-only.
GresTypes=gpu
PrivateData=cloud
SuspendProgram=/bin/true
ResumeProgram=/bin/false
SuspendTime=3600
ResumeTimeout=30
NodeName=$shape_nodes CPUs=$SHAPE_CPUS RealMemory=$SHAPE_MEM_MB$gres State=CLOUD
PartitionName=$SHAPE_PARTITION Nodes=$shape_nodes Default=NO MaxTime=INFINITE State=UP
EOF
    [ "$SHAPE_GPUS" -gt 0 ] && echo "NodeName=$shape_nodes Name=gpu Count=$SHAPE_GPUS" >"$2"
  fi
}

render_conf "$CONF.new" "$DIR/gres.conf.new"
same_conf() {  # the running cluster's configuration is what this start would write (date line aside)
  [ -f "$CONF" ] && cmp -s <(tail -n +2 "$CONF") <(tail -n +2 "$CONF.new") \
    && cmp -s <(cat "$DIR/gres.conf" 2>/dev/null) "$DIR/gres.conf.new"
}

running=0
for f in "$PID_MUNGED" "$PID_SLURMCTLD" "$PID_SLURMD"; do
  [ -n "$(pid_of "$f")" ] && running=$((running + 1))
done
if [ "$running" = 3 ] && ! same_conf; then
  say "the configuration changed (machine or ZAGREUS_SLURM_* settings): restarting the cluster"
elif [ "$running" = 3 ] && timeout 10 sinfo -h >/dev/null 2>&1; then
  state="$(node_state)"
  case "$state" in
    idle|mixed|allocated|completing)
      write_env
      rm -f "$CONF.new" "$DIR/gres.conf.new"
      say "already running (munged $(pid_of "$PID_MUNGED"), slurmctld $(pid_of "$PID_SLURMCTLD"), slurmd $(pid_of "$PID_SLURMD")); node $NODE is $state"
      print_usage
      exit 0 ;;
    *drain*|*down*|*fail*)
      reason="$(sinfo -h -N -n "$NODE" -o '%E' 2>/dev/null)"
      die "already running, but node $NODE is $state (reason: $reason); resume it with: SLURM_CONF=$CONF scontrol update nodename=$NODE state=resume" ;;
  esac
fi
if [ "$running" -gt 0 ] || [ -n "$(our_pids munged slurmctld slurmd slurmstepd)" ]; then
  say "stopping the cluster running from $DIR first (partial, unresponsive or reconfigured)"
  "$HERE/stop.sh"
fi

# ---------------------------------------------------------------- 3. munge
if [ ! -s "$MUNGE_KEY" ]; then
  if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --keyfile="$MUNGE_KEY" --force
  else
    dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
  fi
  say "created munge key $MUNGE_KEY"
fi
chmod 400 "$MUNGE_KEY"
rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$PID_MUNGED"
# --force: run as root and accept the key/socket folder's permissions (it lives under /tmp).
munged --force --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET" --pid-file="$PID_MUNGED" \
  --log-file="$LOG_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed" \
  || { log_tails; die "munged did not start"; }
for ((i = 0; i < 50; i++)); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null \
  || { log_tails; die "munge does not answer on $MUNGE_SOCKET"; }

# ---------------------------------------------------------------- 4. slurm.conf
mv -f "$CONF.new" "$CONF"
rm -f "$DIR/gres.conf"
[ -s "$DIR/gres.conf.new" ] && mv -f "$DIR/gres.conf.new" "$DIR/gres.conf"
rm -f "$DIR/gres.conf.new"
write_env

# ---------------------------------------------------------------- 5. slurmctld, slurmd
rm -f "$PID_SLURMCTLD" "$PID_SLURMD"
T_DAEMONS=$SECONDS
slurmctld -f "$CONF" || { log_tails; die "slurmctld did not start"; }
for ((i = 0; i < 100; i++)); do timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
slurmd -f "$CONF" || { log_tails; die "slurmd did not start"; }

# ---------------------------------------------------------------- 6. wait for the node
deadline=$((SECONDS + WAIT_S))
state=""
while [ $SECONDS -lt $deadline ]; do
  state="$(node_state)"
  case "$state" in
    idle) print_usage; exit 0 ;;
    *drain*)
      reason="$(sinfo -h -N -n "$NODE" -o '%E' 2>/dev/null)"
      log_tails
      die "node $NODE came up $state (reason: $reason); fix the cause above, or resume it with: SLURM_CONF=$CONF scontrol update nodename=$NODE state=resume" ;;
  esac
  for f in "$PID_MUNGED" "$PID_SLURMCTLD" "$PID_SLURMD"; do
    if [ -z "$(pid_of "$f")" ] && [ $((SECONDS - T_DAEMONS)) -gt 3 ]; then
      log_tails; die "$(basename "$f" .pid) exited during start-up (logs above, all in $LOG_DIR)"
    fi
  done
  sleep 0.5
done
log_tails
die "node $NODE is not idle after ${WAIT_S}s (state: ${state:-no answer from sinfo}); logs above, all in $LOG_DIR; raise ZAGREUS_SLURM_WAIT to wait longer"
