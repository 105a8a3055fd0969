#!/usr/bin/env bash
# Production-style services on one Debian 12 machine, as root: PostgreSQL 15, RabbitMQ 3.10, a single-node
# SLURM cluster (munge, MariaDB + slurmdbd for `sacct`, slurmctld, slurmd), and an sshd with a key for root so
# AiiDA reaches that cluster over SSH as it would a real one. Idempotent: installs what is missing,
# writes configuration only where it differs, starts what is not running. No systemd is needed (containers).
#
#   bash setup_profiles/services.sh          # install, configure, start
#   bash setup_profiles/services.sh status   # what runs
#
# Then `python setup_profiles/production.py` creates the AiiDA profile (core.psql_dos + core.rabbitmq) and the
# SLURM computer with the plugin's codes. On a real cluster only the profile part is yours: see docs/production.md.
set -euo pipefail

PG_VERSION=15
DB_USER=${FERROMLIP_DB_USER:-aiida}
DB_PASSWORD=${FERROMLIP_DB_PASSWORD:-aiida-ferromlip}
HOST=$(hostname)
CPUS=$(nproc)
MEMORY_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

log() { echo "[services] $*"; }

install_packages() {
  local packages=(postgresql rabbitmq-server slurm-wlm slurmdbd munge mariadb-server openssh-server openssh-client)
  local missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Write $1 with the content of stdin only if it differs (so reruns do not restart services needlessly).
write_if_changed() {
  local target=$1 mode=${2:-644} tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if ! cmp -s "$tmp" "$target" 2>/dev/null; then
    install -D -m "$mode" "$tmp" "$target"
    log "wrote $target"
  fi
  rm -f "$tmp"
}

start_postgres() {
  pg_lsclusters -h | grep -q "^$PG_VERSION main" || pg_createcluster "$PG_VERSION" main >/dev/null
  pg_lsclusters -h | grep -q "^$PG_VERSION main .* online" || pg_ctlcluster "$PG_VERSION" main start
  # The role the AiiDA profiles connect as. Databases are made per profile by production.py, with the C.UTF-8
  # locale: `verdi presto --use-postgres` asks for en_US.UTF-8, which this machine does not have.
  if ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_roles WHERE rolname='$DB_USER'" | grep -q 1; then
    runuser -u postgres -- psql -qc "CREATE ROLE \"$DB_USER\" LOGIN CREATEDB PASSWORD '$DB_PASSWORD'"
    log "created PostgreSQL role $DB_USER"
  fi
}

start_rabbitmq() {
  # AiiDA's requirement for RabbitMQ >= 3.8.15: no consumer timeout (a long CalcJob would otherwise lose its task).
  write_if_changed /etc/rabbitmq/advanced.config <<'EOF'
%% aiida-ferromlip: AiiDA processes can hold a task for days
[ {rabbit, [ {consumer_timeout, undefined} ]} ].
EOF
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    log "starting RabbitMQ"
    runuser -u rabbitmq -- sh -c 'cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq rabbitmq-server -detached' || \
      rabbitmq-server -detached
    rabbitmqctl -q wait --timeout 120 /var/lib/rabbitmq/mnesia/rabbit@"$HOST".pid >/dev/null 2>&1 || \
      for _ in $(seq 60); do rabbitmqctl -q status >/dev/null 2>&1 && break; sleep 2; done
  fi
  rabbitmqctl -q status >/dev/null
}

start_munge() {
  [ -s /etc/munge/munge.key ] || { mungekey --create --force >/dev/null 2>&1 || \
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge && chown munge:munge /run/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
  fi
}

start_mariadb() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  if ! mysqladmin ping >/dev/null 2>&1; then
    log "starting MariaDB (SLURM accounting storage)"
    # detached from this shell's output, so callers piping it (CI logs) see it end
    (cd / && exec setsid mysqld_safe) </dev/null >/dev/null 2>&1 &
    for _ in $(seq 60); do mysqladmin ping >/dev/null 2>&1 && break; sleep 1; done
  fi
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

configure_slurm() {
  mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
  # Root runs every daemon (this sandbox has no slurm user set up for it); no cgroups: processes are tracked by
  # their parent (linuxproc) and accounted by polling /proc, which containers allow.
  write_if_changed /etc/slurm/slurm.conf <<EOF
# aiida-ferromlip: a single-node test cluster
ClusterName=ferromlip
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=$HOST CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
  write_if_changed /etc/slurm/slurmdbd.conf 600 <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
}

start_slurm() {
  if ! pgrep -x slurmdbd >/dev/null; then
    log "starting slurmdbd"
    slurmdbd
    for _ in $(seq 30); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 1; done
  fi
  sacctmgr -n show cluster format=cluster | grep -qw ferromlip || sacctmgr -i add cluster ferromlip >/dev/null
  if ! pgrep -x slurmctld >/dev/null; then log "starting slurmctld"; slurmctld; fi
  if ! pgrep -x slurmd >/dev/null; then log "starting slurmd"; slurmd; fi
  for _ in $(seq 30); do sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break; sleep 1; done
  scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  sinfo -h -o '%P %T %D %c' | head -1
}

start_sshd() {
  # AiiDA's core.ssh_async transport connects like `ssh localhost`: a key without passphrase, the host key known
  mkdir -p /run/sshd ~/.ssh && chmod 700 ~/.ssh
  pgrep -x sshd >/dev/null || { log "starting sshd"; /usr/sbin/sshd; }
  [ -f ~/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/id_ed25519
  touch ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys
  grep -qF "$(cat ~/.ssh/id_ed25519.pub)" ~/.ssh/authorized_keys || cat ~/.ssh/id_ed25519.pub >> ~/.ssh/authorized_keys
  ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new localhost true
}

status() {
  pg_lsclusters -h | grep "^$PG_VERSION main" || true
  rabbitmqctl -q status >/dev/null 2>&1 && echo "rabbitmq: running" || echo "rabbitmq: down"
  mysqladmin ping >/dev/null 2>&1 && echo "mariadb: running" || echo "mariadb: down"
  for daemon in munged slurmdbd slurmctld slurmd; do
    pgrep -x "$daemon" >/dev/null && echo "$daemon: running" || echo "$daemon: down"
  done
  pgrep -x sshd >/dev/null && echo "sshd: running" || echo "sshd: down"
  sinfo 2>/dev/null || true
}

if [ "${1:-}" = status ]; then status; exit 0; fi
[ "$(id -u)" -eq 0 ] || { echo "run as root: it installs packages and starts system services" >&2; exit 1; }
install_packages
start_postgres
start_rabbitmq
start_munge
start_mariadb
configure_slurm
start_slurm
start_sshd
log "PostgreSQL, RabbitMQ, SLURM and sshd are up"
