#!/usr/bin/env bash
# Set up everything this project needs on a fresh Debian 12 machine (as root):
# the host packages every isolation tier uses, PostgreSQL for the store's
# tests, a virtualenv in .venv with the package and its dev tools (and the
# store's database drivers), and the C spawn helper. Idempotent and quick on
# a second run: apt is only called for packages that are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  bubblewrap util-linux           # namespace sandbox; prlimit(1) fallback
  gcc libc6-dev                   # the sandbox spawn helper (faas-spawn)
  python3 python3-venv            # the gateway, and python3 inside sandboxes
  docker.io                       # container tier (dockerd is started by ensure-dockerd.sh)
  runsc                           # gVisor, an optional OCI runtime for the container tier
  qemu-system-x86                 # microVM tier (QEMU -M microvm, TCG where KVM cannot run guests)
  mmdebstrap e2fsprogs cpio lz4   # guest image builder (Debian rootfs, ext4, initramfs, kernel)
  busybox-static dpkg             # guest init tools
  iproute2 procps curl ca-certificates
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# The store's tests start a private PostgreSQL cluster (tests/pg_cluster.py):
# Debian's server package, unless an initdb is already there.
if ! command -v initdb >/dev/null && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  missing+=(postgresql)
fi
export DEBIAN_FRONTEND=noninteractive
# The image builder downloads the guest kernel with apt-get download: it needs
# package lists even when every package here is already installed.
if ((${#missing[@]})) || ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
  apt-get update -qq
fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.faas-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
# Docker's own default seccomp profile (moby's profiles/seccomp/default.json),
# extracted from Debian's package without installing it: the docker tier adds
# its socket-family rule to it. Without it the tier generates a profile from
# the sandbox's policy (safe, but a denylist).
if ! .venv/bin/python -c 'import sys; from faas.executors.docker.seccomp_profile import DEFAULT_PROFILE_PATHS as p; sys.exit(not any(x.is_file() for x in p))'; then
  .venv/bin/python -m faas.executors.docker.seccomp_profile fetch >/dev/null \
    || echo "setup: Docker's default seccomp profile could not be fetched; the docker tier will use its generated profile"
fi
echo "setup: done ($(.venv/bin/python --version), $(bwrap --version))"
