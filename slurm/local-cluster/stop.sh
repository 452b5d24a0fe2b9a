#!/usr/bin/env bash
# Stop the single-node Slurm cluster that start.sh started from $ZAGREUS_SLURM_DIR (default
# /tmp/zagreus-slurm): cancel its jobs, stop slurmd, slurmctld, any job step daemon left and
# munged (by pid: only processes that hold files under that folder), and check none is left.
#
#   slurm/local-cluster/stop.sh            # keep the folder (logs, state) for a look afterwards
#   slurm/local-cluster/stop.sh --purge    # and remove the folder
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

purge=0
case "${1:-}" in
  --purge) purge=1 ;;
  "") ;;
  *) die "usage: $0 [--purge]" ;;
esac

if [ ! -d "$DIR" ]; then
  say "nothing to stop: $DIR does not exist"
  exit 0
fi
export SLURM_CONF="$CONF"

# 1. Cancel this cluster's jobs while the controller still answers, so that their processes end
#    through Slurm (slurmstepd kills each job's process tree).
if [ -n "$(pid_of "$PID_SLURMCTLD")" ] && [ -f "$CONF" ]; then
  jobs="$(timeout 10 squeue -h -o '%A' 2>/dev/null | tr '\n' ' ' || true)"
  if [ -n "${jobs// /}" ]; then
    say "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    timeout 10 scancel $jobs 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
      [ -z "$(timeout 5 squeue -h -t RUNNING,COMPLETING,CONFIGURING -o '%A' 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
fi

# 2. The daemons, by their pid files, slurmd first.
for pair in "slurmd:$PID_SLURMD" "slurmctld:$PID_SLURMCTLD"; do
  pid="$(pid_of "${pair#*:}")"
  [ -n "$pid" ] && stop_pid "$pid" "${pair%%:*}"
done
# 3. Step daemons left over (the controller was gone, so jobs could not be cancelled): their job
#    processes first, then them; then daemons whose pid file went missing (they hold files under $DIR).
for pid in $(our_pids slurmstepd); do
  for child in $(descendants "$pid"); do stop_pid "$child" "job process $child ($(ps -o comm= -p "$child" 2>/dev/null))" 5; done
  stop_pid "$pid" "slurmstepd (left over)" 1
done
for pid in $(our_pids slurmstepd slurmd slurmctld); do
  stop_pid "$pid" "$(readlink "/proc/$pid/exe" 2>/dev/null | xargs -r basename) (left over)" 5
done
pid="$(pid_of "$PID_MUNGED")"
[ -n "$pid" ] && stop_pid "$pid" munged
for pid in $(our_pids munged); do stop_pid "$pid" "munged (left over)" 5; done

left="$(our_pids munged slurmctld slurmd slurmstepd)"
[ -z "$left" ] || die "processes still running after stop: $left"
rm -f "$PID_MUNGED" "$PID_SLURMCTLD" "$PID_SLURMD" "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
if [ "$purge" = 1 ]; then
  rm -rf "$DIR"
  say "stopped; removed $DIR"
else
  say "stopped; logs and state kept in $DIR (stop.sh --purge removes them)"
fi
