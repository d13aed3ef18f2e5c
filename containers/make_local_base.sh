#!/usr/bin/env bash
# Make a local stand-in for python:3.11-slim-bookworm where no registry image can be pulled (CI,
# air-gapped hosts): a Debian bookworm minbase root fs (debootstrap, Debian packages only) with
# Python 3.11, procps and CA certificates, and a venv at /opt/venv first on PATH so that `python`,
# `python3` and `pip` behave as in the official image (no externally-managed-environment error).
#   containers/make_local_base.sh [IMAGE]      (default localhost/czb-python:3.11-bookworm)
# The root fs tarball is cached in containers/.cache/ (git-ignored): a rerun only re-imports it.
# Pass the image to the builds with  containers/build.sh --base-image IMAGE.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image="${1:-localhost/czb-python:3.11-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
engine="${CONTAINER_ENGINE:-podman}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/tools/containers.conf}"
cache="$root/containers/.cache"
tarball="$cache/bookworm-python3.11-rootfs.tar"
mkdir -p "$cache"
if [[ ! -s "$tarball" ]]; then
  rootfs="$(mktemp -d "$cache/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,procps,ca-certificates \
    bookworm "$rootfs" "$mirror"
  chroot "$rootfs" /usr/bin/python3 -m venv /opt/venv
  chroot "$rootfs" /opt/venv/bin/python -m pip --version
  # Fresh builds run `apt-get update` themselves: drop the package caches and lists.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
  tar -C "$rootfs" --numeric-owner -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
fi
"$engine" import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV VIRTUAL_ENV=/opt/venv' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$tarball" "$image" >/dev/null
"$engine" run --rm "$image" sh -c 'python --version && pip --version && command -v ps'
echo "[make_local_base] $image"
