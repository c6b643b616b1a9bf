#!/usr/bin/env bash
# `make ee`: the AWX execution environment, built and tried here with no registry.
#  1. podman, runc and debootstrap (apt-get, when missing) and a containers.conf for this machine
#     (runc, cgroupfs, file events, default ulimits) in .build/containers.conf, used via CONTAINERS_CONF;
#  2. a Debian 12 base image bootstrapped locally with debootstrap, cached as a tarball under
#     $ERLMCP_DR_CACHE (default /var/cache/erlmcp-dr) and imported as localhost/erlmcp-dr/debian-base:bookworm;
#  3. the collection tarball, `ansible-builder create` (execution-environment.yml) and `podman build`;
#  4. a lab on free ports, and one runbook's plan (database_switchover --check) run inside the image
#     against it (host network, the lab folder mounted at the same path); prints the times.
# Measured on a 2-core machine shared with other jobs: first run 4-5 min (debootstrap 40-140 s, base
# image 10 s, EE build 80 s, plan 3-6 s); later runs reuse the cached rootfs and base image and rebuild
# the stages from the collection tarball on (~70 s; 20 s when nothing changed since the last build).
# Assumes scripts/setup.sh ran (.venv with ansible-builder). EE_SKIP_RUN=1 builds only; EE_MOVE=1 also runs a real
# unplanned regional failover inside the image (about a minute more; not part of `make test`);
# `scripts/ee.sh base` stops after step 2 (the base image the Molecule node image builds on).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log() { printf 'ee: %s\n' "$*" >&2; }
now() { date +%s; }
t0=$(now)

CACHE=${ERLMCP_DR_CACHE:-/var/cache/erlmcp-dr}
ROOTFS_IMAGE=localhost/erlmcp-dr/debian:bookworm  # the debootstrap tree as it is
BASE_IMAGE=localhost/erlmcp-dr/debian-base:bookworm  # plus the Python the EE uses
EE_IMAGE=${EE_IMAGE:-localhost/erlmcp-dr/ee:latest}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
EXTRA_CA_DIR=${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}  # CAs this machine added to its store
build=$root/.build/ee

need_tools() {
  local need=()
  command -v podman >/dev/null || need+=(podman)
  command -v runc >/dev/null || need+=(runc)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then log "missing: ${need[*]} (install them, or run this as root)"; exit 1; fi
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
    fuse-overlayfs slirp4netns uidmap >/dev/null
}

# This machine runs containers inside a container: no systemd (cgroupfs), no journald (file events),
# and podman's default ulimits (nofile 1048576) lie above the hard limits it may set ("error setting
# rlimit type 7"): the defaults here are this shell's hard limits, capped.
containers_conf() {
  local nofile nproc
  nofile=$(ulimit -Hn); { [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ]; } && nofile=65536
  nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 8192 ]; } && nproc=8192
  mkdir -p "$root/.build"
  # Written aside and renamed: Molecule and the EE test run this at the same time (scripts/test.sh), and a podman
  # of one must never read the other's half-written file.
  cat > "$root/.build/containers.conf.$$" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  mv -f "$root/.build/containers.conf.$$" "$root/.build/containers.conf"
  export CONTAINERS_CONF=$root/.build/containers.conf
}

# Debian's minimal system with Python and pip; /usr/local/bin/pkgmgr lets ansible-builder's
# scripts (written for dnf: `install -y PKGS`, `clean all`) install bindep's packages with apt.
base_image() {
  podman image exists "$BASE_IMAGE" && return 0
  # One builder at a time: `make test` builds the EE (tests/integration/test_ee.py) while Molecule, started beside
  # pytest, builds its node image on the same base; the second waits for the first and then finds the image.
  local lock_fd
  mkdir -p "$CACHE"
  exec {lock_fd}>"$CACHE/base-image.lock"
  flock "$lock_fd"
  if podman image exists "$BASE_IMAGE"; then flock -u "$lock_fd"; return 0; fi
  build_base_image
  flock -u "$lock_fd"
}

build_base_image() {
  local tarball=$CACHE/rootfs-$SUITE.tar rootfs
  if [ ! -f "$tarball" ]; then
    mkdir -p "$CACHE"
    rootfs=$(mktemp -d "$CACHE/rootfs-$SUITE.XXXXXX")
    log "debootstrap $SUITE into $rootfs (cached as $tarball)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      "$SUITE" "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { log "debootstrap failed, see $CACHE/debootstrap.log"; rm -rf "$rootfs"; exit 1; }
    cat > "$rootfs/usr/local/bin/pkgmgr" <<'EOF'
#!/bin/sh
# dnf's two verbs that ansible-builder's scripts use, done with apt-get.
set -e
export DEBIAN_FRONTEND=noninteractive
case "$1" in
  install) shift; while [ "${1#-}" != "$1" ]; do shift; done
           apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" ;;
  clean) apt-get clean; rm -rf /var/lib/apt/lists/* ;;
  *) echo "pkgmgr: unsupported: $*" >&2; exit 2 ;;
esac
EOF
    chmod 0755 "$rootfs/usr/local/bin/pkgmgr"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  log "importing $tarball as $ROOTFS_IMAGE"
  podman import --quiet --change 'CMD ["/bin/bash"]' "$tarball" "$ROOTFS_IMAGE" >/dev/null
  # Debian disables ensurepip for its system Python (PEP 668), and ansible-builder's pip_install runs it:
  # the EE's Python is a virtualenv (where ensurepip works), first on PATH.
  # This machine's own CAs (a TLS-inspecting egress proxy) are trusted in the image as on the host, by
  # the system store and by pip (whose vendored bundle would not know them).
  mkdir -p "$build/base/ca"
  cp "$EXTRA_CA_DIR"/*.crt "$build/base/ca/" 2>/dev/null || true
  printf '%s\n' "FROM $ROOTFS_IMAGE" "COPY ca/ /usr/local/share/ca-certificates/" \
    "RUN update-ca-certificates >/dev/null && python3 -m venv /opt/venv" \
    "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" > "$build/base/Containerfile"
  podman build --quiet --network host --tag "$BASE_IMAGE" "$build/base" >/dev/null
}

ee_image() {
  rm -rf "$build/context" "$build/wheel" "$build"/*.tar.gz; mkdir -p "$build"
  "$root/.venv/bin/ansible-galaxy" collection build --force --output-path "$build" >/dev/null
  mv "$build"/erlmcp-dr-*.tar.gz "$build/erlmcp-dr.tar.gz"
  # The controller package for composed runbooks (execution-environment.yml installs it with --no-deps).
  "$root/.venv/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$build/wheel" "$root" \
    >"$build/wheel.log" 2>&1 || { tail -20 "$build/wheel.log" >&2; log "wheel build failed"; exit 1; }
  "$root/.venv/bin/ansible-builder" create --file execution-environment.yml --context "$build/context" >/dev/null
  log "podman build $EE_IMAGE"
  podman build --quiet --network host --tag "$EE_IMAGE" "$build/context" >"$build/build.log" 2>&1 \
    || { tail -40 "$build/build.log" >&2; log "podman build failed, see $build/build.log"; exit 1; }
}

# A lab on free ports for a run inside the image, its inventory and lock folder open to the container's root; with
# `moved`, also region a's DNS up and region a killed (what an unplanned regional failover starts from). Prints its
# folder; the lab's port base is kept in <folder>/port_base for lab_down.
lab_for_ee() {  # $1: a name for the folder, $2: plan | moved
  local lab_root
  lab_root=$(mktemp -d "/tmp/erlmcp-dr-ee-$1.XXXXXX")
  chmod 0755 "$lab_root"
  "$root/.venv/bin/python" - "$lab_root" "$2" <<'PY' >&2
import sys
from pathlib import Path
from erlmcp_dr.lab import dns as lab_dns, lifecycle as lab, regions as lab_regions
cfg = lab.LabConfig(root=Path(sys.argv[1]), port_base=lab.free_port_base())
lab.reset(cfg)
lab.wait_streaming(cfg)
if sys.argv[2] == "moved":
    lab_dns.up(cfg)
lab.write_inventory(cfg, cfg.root / "inventory" / "hosts.yml", own_lock_dir=True)
if sys.argv[2] == "moved":
    lab_regions.fail_region(cfg, "a")
(cfg.root / "port_base").write_text(str(cfg.port_base))  # after reset, which empties the folder
PY
  chmod -R a+rwX "$lab_root/inventory" "$lab_root"/locks 2>/dev/null || true
  printf '%s\n' "$lab_root"
}

# Stops the lab of lab_for_ee and removes its folder; with `moved`, first checks that the move left pg-b primary and
# pg-c its standby (exit 1 otherwise).
lab_down() {  # $1: the lab's folder, $2: plan | moved
  local rc=0
  "$root/.venv/bin/python" - "$1" "$2" <<'PY' >&2 || rc=1
import sys
from pathlib import Path
from erlmcp_dr.lab import lifecycle as lab
root = Path(sys.argv[1])
cfg = lab.LabConfig(root=root, port_base=int((root / "port_base").read_text()))
roles = {row["name"]: row["role"] for row in lab.status(cfg)["nodes"]}
lab.down(cfg)
if sys.argv[2] == "moved":
    print(f"ee: after the move: {roles}")
    sys.exit(0 if roles.get("pg-b") == "primary" and roles.get("pg-c") == "standby" else 1)
PY
  rm -rf "$1"
  return "$rc"
}

# --pid host, for every run against a lab: the lab's nodes are processes of this machine; from another pid namespace
# the engine would find a running node it cannot see, and refuses to act on it
# (tests/integration/test_pg_server_namespace.py).
run_in_ee() {  # $1: the lab's folder, then the command
  local lab_root=$1; shift
  podman run --rm --network host --pid host --user 0 -v "$lab_root:$lab_root" "$EE_IMAGE" "$@"
}

plan_in_ee() {  # a lab on free ports, then database_switchover --check inside the image
  local lab_root t rc=0
  lab_root=$(lab_for_ee lab plan)
  t=$(now)
  run_in_ee "$lab_root" ansible-playbook erlmcp.dr.database_switchover -i "$lab_root/inventory/hosts.yml" --check \
    -e candidate=pg-b >"$build/plan.log" 2>&1 || rc=$?
  log "plan inside the image: rc $rc in $(( $(now) - t )) s (output: $build/plan.log)"
  lab_down "$lab_root" plan || true
  [ "$rc" -eq 0 ] || { tail -30 "$build/plan.log" >&2; exit "$rc"; }
  grep -E '^(PLAY RECAP|localhost|pg-)' "$build/plan.log" | tail -5 >&2 || true
  # The composed runbooks need the controller package (erlmcp.dr.composed_run imports it): its CLI reads the
  # regional failover's workflow through erlmcp_dr.compose inside the image.
  rc=0
  podman run --rm --network none "$EE_IMAGE" runbook show regional_failover >"$build/controller.log" 2>&1 || rc=$?
  log "controller package inside the image: rc $rc (output: $build/controller.log)"
  [ "$rc" -eq 0 ] || { tail -30 "$build/controller.log" >&2; exit "$rc"; }
}

move_in_ee() {  # EE_MOVE=1: a real unplanned regional failover (a -> b) inside the image, against a lab whose region a died
  local lab_root t rc=0
  lab_root=$(lab_for_ee move moved)
  t=$(now)
  run_in_ee "$lab_root" ansible-playbook erlmcp.dr.regional_failover -i "$lab_root/inventory/hosts.yml" \
    -e from_region=a -e to_region=b -e mode=unplanned -e health_interval=0.2 >"$build/move.log" 2>&1 || rc=$?
  log "regional failover inside the image: rc $rc in $(( $(now) - t )) s (output: $build/move.log)"
  lab_down "$lab_root" moved || rc=1
  [ "$rc" -eq 0 ] || { tail -30 "$build/move.log" >&2; exit "$rc"; }
}

need_tools
containers_conf
tb=$(now); base_image; log "base image ready in $(( $(now) - tb )) s"
[ "${1:-}" = base ] && exit 0  # `scripts/ee.sh base`: the base image only (scripts/molecule.sh)
tb=$(now); ee_image; log "execution environment built in $(( $(now) - tb )) s"
[ "${EE_SKIP_RUN:-}" = 1 ] || plan_in_ee
[ "${EE_MOVE:-}" = 1 ] && move_in_ee
log "make ee took $(( $(now) - t0 )) s"
