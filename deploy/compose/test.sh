#!/usr/bin/env bash
# deploy/compose/test.sh: the three-node compose cluster, built and failed over on this machine.
#
# What it does (as root, on Debian, with no image registry; PyPI and the Debian mirror reachable):
#   1. installs docker.io, docker-compose and debootstrap with apt if missing, and starts
#      dockerd if none runs (stopping it again at the end, and putting back the firewall
#      rules and bridge sysctls it changed);
#   2. makes a base image without a registry: debootstrap --variant=minbase of Debian
#      bookworm with python3, then `docker import` (the rootfs tarball is cached in
#      /var/cache/mq9-compose, so later runs skip debootstrap);
#   3. builds the project's wheels on the host for the base image's Python and platform,
#      and the image from deploy/compose/Dockerfile with them (pip --no-index);
#   4. `docker-compose up` of deploy/compose/docker-compose.yml as project mq9test, and
#      runs deploy/compose/check.py (nats-py from the host through 127.0.0.1:4222-4224);
#   5. tears everything down (containers, networks, volumes, the images it built), also
#      when a check fails or the script is interrupted, and checks nothing is left.
# Prints each check and a closing "compose: N passed, N failed"; exits 1 if any failed.
# The log goes to logs/compose.log too.
#
# Environment: COMPOSE (compose command, default docker-compose, e.g. "docker compose"),
# MQ9T_KEEP=1 (leave the cluster running at the end, for debugging; nothing is torn down),
# MQ9T_PUBLISHES (default 2000).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 1

if [ -z "${MQ9T_LOGGING:-}" ]; then  # run again with the output also going to logs/compose.log
  mkdir -p logs
  # tee ignores Ctrl-C and TERM, so the log and the terminal still get the teardown
  MQ9T_LOGGING=1 bash "$HERE/test.sh" "$@" 2>&1 | (trap '' INT TERM; exec tee logs/compose.log)
  exit "${PIPESTATUS[0]}"
fi

PROJECT=mq9test
IMAGE=mq9test/mq9-cluster:test
BASE=mq9test/base:bookworm
SUITE=${MQ9T_SUITE:-bookworm}
CACHE=/var/cache/mq9-compose
BASE_TAR=$CACHE/$SUITE-minbase-python3.tar
PORTS=(4222 4223 4224 8222 8223 8224)
COMPOSE_CMD=${COMPOSE:-docker-compose}
WORK=$(mktemp -d /tmp/mq9-compose.XXXXXX)
PY=$ROOT/.venv/bin/python
export DEBIAN_FRONTEND=noninteractive

passed=0
failed=0
started_dockerd=""
torn_down=""
t_start=$(date +%s)

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
compose() { $COMPOSE_CMD -p "$PROJECT" -f "$HERE/docker-compose.yml" "$@"; }
# what compose reads from the environment (see docker-compose.yml)
export MQ9_IMAGE=$IMAGE MQ9_BUILD_CONTEXT=$WORK/context MQ9_BASE_IMAGE=$BASE MQ9_WHEELHOUSE=wheelhouse \
       MQ9_ENV_FILE=$WORK/cluster.env MQ9_LOG_LEVEL=info

# ---- teardown: always, once --------------------------------------------------------------
base_id() {  # our base image's id: from its tag, or as recorded when this run imported it
  docker image inspect -f '{{.Id}}' "$BASE" 2>/dev/null || cat "$WORK/base.id" 2>/dev/null
}

our_images() {  # every image whose chain of parents reaches our base image (base included)
  local base=$1 id cur
  [ -n "$base" ] || return 0
  for id in $(docker images -aq --no-trunc 2>/dev/null); do
    cur=$id
    while [ -n "$cur" ]; do
      if [ "$cur" = "$base" ]; then echo "$id"; break; fi
      cur=$(docker image inspect -f '{{.Parent}}' "$cur" 2>/dev/null)
    done
  done | sort -u
}

leftovers() {  # docker objects of this script that still exist, one per line
  docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null | sed 's/^/container /'
  docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null | sed 's/^/network /'
  docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null | sed 's/^/volume /'
  docker images -q "$IMAGE" 2>/dev/null | sed 's/^/image /'
  docker images -q "$BASE" 2>/dev/null | sed 's/^/image /'
  our_images "$(base_id)" | sed 's/^/image /'
}

remove_all() {
  local ids base
  base=$(base_id)
  compose down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1
  # also what a killed earlier run may have left (compose down needs the same file to find it)
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")
  [ -n "$ids" ] && docker rm -f -v $ids >/dev/null
  ids=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")
  [ -n "$ids" ] && docker network rm $ids >/dev/null
  ids=$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
  [ -n "$ids" ] && docker volume rm $ids >/dev/null
  # the image, its base, and the untagged images of the build (the multi-stage build's
  # first stage, and the layers of a build that failed half-way)
  docker rmi "$IMAGE" >/dev/null 2>&1
  for id in $(our_images "$base"); do  # containers a failed build step leaves behind
    ids=$(docker ps -aq --filter "ancestor=$id")
    [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1
  done
  for _ in 1 2 3; do
    ids=$(our_images "$base" | grep -v "^$base\$")
    [ -z "$ids" ] && break
    docker rmi $ids >/dev/null 2>&1
  done
  docker rmi "$BASE" >/dev/null 2>&1
  [ -n "$base" ] && docker rmi "$base" >/dev/null 2>&1
  return 0
}

firewall_save() {  # dockerd adds iptables chains, sets FORWARD to DROP and turns on bridge netfilter
  iptables-save > "$WORK/iptables.rules" 2>/dev/null || rm -f "$WORK/iptables.rules"
  ip6tables-save > "$WORK/ip6tables.rules" 2>/dev/null || rm -f "$WORK/ip6tables.rules"
  : > "$WORK/sysctls"
  for f in /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/bridge/bridge-nf-call-ip6tables \
           /proc/sys/net/ipv4/ip_forward; do
    if [ -f "$f" ]; then echo "$f $(cat "$f")" >> "$WORK/sysctls"; else echo "$f 0" >> "$WORK/sysctls"; fi
  done
  ip link show docker0 >/dev/null 2>&1 && touch "$WORK/had-docker0"
}

firewall_restore() {
  [ -f "$WORK/iptables.rules" ] && { iptables -F; iptables -X; iptables -t nat -F; iptables -t nat -X;
                                     iptables -P INPUT ACCEPT; iptables -P FORWARD ACCEPT; iptables -P OUTPUT ACCEPT;
                                     iptables-restore < "$WORK/iptables.rules"; }
  [ -f "$WORK/ip6tables.rules" ] && { ip6tables -F; ip6tables -X; ip6tables -t nat -F 2>/dev/null;
                                      ip6tables -t nat -X 2>/dev/null; ip6tables-restore < "$WORK/ip6tables.rules"; }
  while read -r f v; do [ -f "$f" ] && echo "$v" > "$f"; done < "$WORK/sysctls"
  [ -f "$WORK/had-docker0" ] || ip link delete docker0 2>/dev/null
  return 0
}

stop_dockerd() {
  [ -n "$started_dockerd" ] || return 0
  say "stopping the dockerd this script started (pid $started_dockerd)"
  kill -TERM "$started_dockerd" 2>/dev/null
  for _ in $(seq 60); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$started_dockerd" 2>/dev/null && { kill -KILL "$started_dockerd"; sleep 1; }
  firewall_restore
  started_dockerd=""
}

finish() {
  local status=$?
  trap - EXIT INT TERM
  if [ -z "$torn_down" ] && [ "${MQ9T_KEEP:-0}" = 1 ]; then
    say "MQ9T_KEEP=1: leaving project $PROJECT running; tear down with:"
    echo "  $COMPOSE_CMD -p $PROJECT -f $HERE/docker-compose.yml down -v; docker rmi $IMAGE $BASE"
  elif [ -z "$torn_down" ] && docker info >/dev/null 2>&1; then
    say "tearing down: containers, networks, volumes and images of project $PROJECT"
    remove_all
    local left
    left=$(leftovers)
    if [ -z "$left" ]; then
      pass "teardown: no container, network, volume or image of $PROJECT left"
    else
      fail "teardown: left behind:"; echo "$left" | sed 's/^/    /'
    fi
  fi
  torn_down=1
  [ "${MQ9T_KEEP:-0}" = 1 ] || stop_dockerd
  rm -rf "$WORK"
  say "took $(( $(date +%s) - t_start ))s"
  echo "compose: $passed passed, $failed failed"
  if [ "$failed" -gt 0 ] || { [ "$passed" -eq 0 ] && [ "$status" -ne 0 ]; }; then exit 1; fi
  exit 0
}
trap finish EXIT
trap 'echo "interrupted"; failed=$((failed + 1)); exit 130' INT TERM
trap '' PIPE  # Ctrl-C also ends the tee of the log: the teardown must go on without it

abort() {  # a setup step failed: nothing after it can run
  fail "$*"
  exit 1
}

# ---- 1. tools and dockerd ----------------------------------------------------------------
[ "$(id -u)" = 0 ] || abort "setup: must run as root (apt, dockerd, debootstrap)"
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v iptables >/dev/null || need+=(iptables)
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get install ${need[*]}"
  { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; } || abort "setup: apt-get install ${need[*]}"
fi
command -v docker >/dev/null || abort "setup: no docker client after installing docker.io"

if ! docker info >/dev/null 2>&1; then
  firewall_save
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid  # left by a dockerd that was killed
  fi
  say "starting dockerd (log: $WORK/dockerd.log)"
  setsid dockerd --log-level warn </dev/null >"$WORK/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log"; abort "setup: dockerd did not start"; }
fi
say "docker $(docker version -f '{{.Server.Version}}' 2>/dev/null), $($COMPOSE_CMD version --short 2>/dev/null || $COMPOSE_CMD version | head -1)"

# what an earlier run that was killed may have left
if [ -n "$(leftovers)" ]; then
  say "removing what an earlier run left:"; leftovers | sed 's/^/    /'
  remove_all
fi

for port in "${PORTS[@]}"; do
  if ! python3 -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $port))" 2>/dev/null; then
    ss -ltnp 2>/dev/null | grep -E "[:.]$port\b" | sed 's/^/    /'
    abort "setup: 127.0.0.1:$port is in use; the cluster publishes its client ports 4222-4224 and monitoring ports 8222-8224 there: stop what uses it and run again"
  fi
done

# ---- 2. base image without a registry ----------------------------------------------------
debian_mirror() {  # the Debian mirror apt already uses
  local uri
  uri=$( (grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
          grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}') |
         grep -E '/debian/?$' | head -1)
  echo "${uri:-http://deb.debian.org/debian}"
}

if [ ! -s "$BASE_TAR" ]; then
  mirror=$(debian_mirror)
  say "debootstrap --variant=minbase $SUITE from $mirror (cached afterwards in $BASE_TAR)"
  mkdir -p "$CACHE"
  if ! debootstrap --variant=minbase --include=python3,python3-venv,python3-pip "$SUITE" "$WORK/rootfs" "$mirror" \
       >"$WORK/debootstrap.log" 2>&1; then
    tail -20 "$WORK/debootstrap.log"
    abort "setup: debootstrap"
  fi
  (cd "$WORK/rootfs" && rm -rf var/cache/apt/*.bin var/cache/apt/archives/*.deb var/lib/apt/lists/* \
                                usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/locale/* tmp/* )
  tar -C "$WORK/rootfs" --numeric-owner -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$WORK/rootfs"
fi
say "docker import $BASE_TAR as $BASE"
docker import --change 'CMD ["python3"]' "$BASE_TAR" "$BASE" >/dev/null || abort "setup: docker import of the base image"
docker image inspect -f '{{.Id}}' "$BASE" > "$WORK/base.id"
read -r img_py img_glibc img_arch < <(docker run --rm --network none "$BASE" python3 -c \
  'import sys, platform; print(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.libc_ver()[1], platform.machine())')
[ -n "${img_arch:-}" ] || abort "setup: the base image has no working python3"
say "base image: Python $img_py, glibc $img_glibc, $img_arch, $(docker image inspect -f '{{.Size}}' "$BASE" | awk '{printf "%.0f MB", $1/1e6}')"

# ---- 3. wheels on the host, then the image -------------------------------------------------
if [ ! -x "$PY" ] || ! "$PY" -c 'import nats, node.cli' 2>/dev/null; then
  say "creating .venv (make .venv/.installed)"
  make -s .venv/.installed >/dev/null || abort "setup: make .venv/.installed"
fi

say "build context $WORK/context: the project's sources and a wheelhouse"
mkdir -p "$WORK/context/deploy" "$WORK/context/wheelhouse" "$WORK/host-wheels"
cp -r pyproject.toml README.md cluster node "$WORK/context/"
cp -r deploy/compose "$WORK/context/deploy/"
rm -rf "$WORK/context/deploy/compose/wheelhouse" "$WORK/context/deploy/compose/cluster.env"
find "$WORK/context" -name __pycache__ -prune -exec rm -rf {} +
# 1) the project and every dependency as wheels for the host's Python (builds sdist-only ones,
#    such as pysyncobj); the pure-Python ones run anywhere
if ! "$PY" -m pip wheel -q -w "$WORK/host-wheels" "$WORK/context" >"$WORK/pip.log" 2>&1; then
  grep -v "is ignored" "$WORK/pip.log" | tail -20; abort "setup: pip wheel of the project"
fi
rm -rf "$WORK/context/build" "$WORK/context"/*.egg-info
cp "$WORK"/host-wheels/*-none-any.whl "$WORK/context/wheelhouse/"
# 2) the binary ones again, for the image's Python and glibc (not the host's)
minor=${img_glibc#*.}
platforms=()
for m in $(seq "$minor" -1 17); do platforms+=(--platform "manylinux_2_${m}_${img_arch}"); done
platforms+=(--platform "manylinux2014_${img_arch}" --platform "manylinux2010_${img_arch}" --platform "manylinux1_${img_arch}")
if ! "$PY" -m pip download -q --only-binary=:all: "${platforms[@]}" --python-version "$img_py" \
     --implementation cp --abi "cp${img_py/./}" --find-links "$WORK/context/wheelhouse" \
     -d "$WORK/context/wheelhouse" "$WORK"/context/wheelhouse/mq9_cluster-*.whl >"$WORK/pip.log" 2>&1; then
  grep -v "is ignored" "$WORK/pip.log" | tail -20; abort "setup: pip download of wheels for Python $img_py"
fi
say "wheelhouse: $(ls "$WORK/context/wheelhouse" | wc -l) wheels, $(du -sh "$WORK/context/wheelhouse" | cut -f1)"

say "building $IMAGE (compose build, base $BASE, pip --no-index from the wheelhouse)"
printf 'MQ9_CLUSTER_SECRET=%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$WORK/cluster.env"
t0=$(date +%s)
if compose build n1 >"$WORK/build.log" 2>&1; then
  size=$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')
  user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
  pass "image $IMAGE builds offline from the wheelhouse ($(( $(date +%s) - t0 ))s, $size, user $user)"
else
  tail -30 "$WORK/build.log"
  abort "image build (log above)"
fi

# ---- 4. the cluster and the checks -------------------------------------------------------
say "$COMPOSE_CMD -p $PROJECT up -d"
if compose up -d --no-build >"$WORK/up.log" 2>&1; then
  pass "docker-compose up: three nodes started ($(compose ps -q | wc -l) containers)"
else
  cat "$WORK/up.log"
  abort "docker-compose up"
fi

MQ9T_COMPOSE="$COMPOSE_CMD -p $PROJECT -f $HERE/docker-compose.yml" MQ9T_PROJECT=$PROJECT \
  "$PY" "$HERE/check.py" | tee "$WORK/check.log"
summary=$(grep -E '^checks: [0-9]+ passed, [0-9]+ failed' "$WORK/check.log" | tail -1)
if [ -z "$summary" ]; then
  fail "check.py ended without its summary line"
else
  read -r _ p _ f _ <<<"$summary"
  passed=$((passed + p)); failed=$((failed + f))
fi
if [ "$failed" -gt 0 ]; then
  say "node logs (last 60 lines each):"
  compose logs --no-color --tail=60 2>&1 | sed 's/^/    /'
fi
# finish() tears down and prints the summary
