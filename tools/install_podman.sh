#!/usr/bin/env bash
# Install a rootful podman that builds and runs this project's images, plus the tools the image
# scripts use: skopeo (digests), docker-registry (a local registry), debootstrap (a local base image
# where no registry image can be pulled). Idempotent: installed packages are left alone.
#   bash tools/install_podman.sh
# Afterwards: export CONTAINERS_CONF="$PWD/tools/containers.conf" (the scripts and tests do this).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
packages=(podman runc skopeo docker-registry debootstrap uidmap fuse-overlayfs)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export CONTAINERS_CONF="$root/tools/containers.conf"
podman --version
podman info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}' >/dev/null
echo "[install_podman] ok: CONTAINERS_CONF=$CONTAINERS_CONF"
