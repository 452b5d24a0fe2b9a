# Shared by start.sh and stop.sh (sourced, not run): the cluster's folder layout and process helpers.
# Everything the cluster writes (munge key and socket, slurm.conf, controller state, slurmd spool,
# pid files, logs) lives under one folder: $ZAGREUS_SLURM_DIR, default /tmp/zagreus-slurm.

DIR="${ZAGREUS_SLURM_DIR:-/tmp/zagreus-slurm}"
case "$DIR" in /*) ;; *) DIR="$(pwd)/$DIR" ;; esac
DIR="${DIR%/}"
CONF="$DIR/slurm.conf"
MUNGE_DIR="$DIR/munge"
MUNGE_KEY="$MUNGE_DIR/munge.key"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
RUN_DIR="$DIR/run"
LOG_DIR="$DIR/log"
STATE_DIR="$DIR/state"
SPOOL_DIR="$DIR/spool"
PID_MUNGED="$RUN_DIR/munged.pid"
PID_SLURMCTLD="$RUN_DIR/slurmctld.pid"
PID_SLURMD="$RUN_DIR/slurmd.pid"

# Daemons live in /usr/sbin, which a non-login root shell may lack on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "[zagreus-slurm] $*"; }
die() { echo "[zagreus-slurm] error: $*" >&2; exit 1; }

# pid_of FILE: the pid recorded in FILE when that process is alive, else nothing.
pid_of() {
  local pid
  [ -s "$1" ] || return 0
  pid="$(tr -dc '0-9' <"$1")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && ! is_zombie "$pid"; then echo "$pid"; fi
}

is_zombie() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

# our_pids NAME...: pids of running processes whose executable is one of NAME... and that hold a
# file open under $DIR (their log file, socket or spool): the daemons this folder's cluster started
# and their job step daemons (slurmstepd). A Slurm or munge started from elsewhere is never matched.
our_pids() {
  local p exe name want
  for p in /proc/[0-9]*; do
    exe="$(readlink "$p/exe" 2>/dev/null)" || continue
    is_zombie "${p#/proc/}" && continue
    name="${exe##*/}"; name="${name% (deleted)}"; name="${name%-wlm}"   # Debian: slurmstepd-wlm
    for want in "$@"; do
      if [ "$name" = "$want" ]; then
        if ls -l "$p/fd" 2>/dev/null | grep -qF -- "-> $DIR/"; then echo "${p#/proc/}"; fi
        break
      fi
    done
  done
}

# descendants PID: the pids of PID's children, grandchildren, ... (deepest last).
descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

# stop_pid PID LABEL [SECONDS]: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local pid="$1" label="$2" wait_s="${3:-15}" i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait_s * 10; i++)); do
    { ! kill -0 "$pid" 2>/dev/null || is_zombie "$pid"; } && { say "stopped $label (pid $pid)"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  say "killed $label (pid $pid) after ${wait_s}s"
}

log_tails() {
  local f
  for f in "$LOG_DIR"/munged.log "$LOG_DIR"/slurmctld.log "$LOG_DIR"/slurmd.log; do
    [ -f "$f" ] || continue
    echo "----- last 20 lines of $f -----" >&2
    tail -n 20 "$f" >&2
  done
}
