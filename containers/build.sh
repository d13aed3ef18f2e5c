#!/usr/bin/env bash
# Build (and optionally push and pin) every image the pipeline names: the light image, the torch
# parent, and each model image of conf/models.yaml, tagged as the configs name them.
#   containers/build.sh [--engine podman|docker] [--registry REGISTRY] [--base-image IMAGE]
#                       [--only NAME[,NAME...]] [--push] [--pin] [--lock FILE] [--ca-bundle FILE]
#   --registry    image prefix (default: the pipeline's --container_registry default, nextflow.config)
#   --base-image  BASE_IMAGE build argument (default: the Dockerfiles' python:3.11.11-slim-bookworm);
#                 containers/make_local_base.sh makes a stand-in where no registry image can be pulled
#   --push        push each image and record its registry digest (plain HTTP for 127.0.0.1/localhost);
#                 the digest podman/docker reports must equal the one the registry serves (skopeo)
#   --pin         write the recorded digests into conf/models.yaml and nextflow.config
#                 (name:tag@sha256:...) and copy the lock to containers/images.lock.json
#   --lock        the lock file (default containers/.cache/images.lock.json, git-ignored)
#   --ca-bundle   podman only: a CA bundle mounted into the build (and named in /etc/pip.conf) for
#                 hosts behind a TLS-intercepting proxy; default $PIP_CERT when set
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/tools/containers.conf}"
engine=""
registry="$(sed -n "s/^ *container_registry *= *'\([^']*\)'.*/\1/p" nextflow.config)"
base_image=""
only=""
push=false
pin=false
lock="$root/containers/.cache/images.lock.json"
ca_bundle="${PIP_CERT:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --engine) engine="$2"; shift ;;
    --registry) registry="$2"; shift ;;
    --base-image) base_image="$2"; shift ;;
    --only) only="$2"; shift ;;
    --push) push=true ;;
    --pin) pin=true ;;
    --lock) lock="$2"; shift ;;
    --ca-bundle) ca_bundle="$2"; shift ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "$engine" ]]; then
  if command -v podman >/dev/null 2>&1; then engine=podman; else engine=docker; fi
fi
[[ "$engine" == podman || "$engine" == docker ]] || { echo "--engine: '$engine' is not podman or docker" >&2; exit 2; }
insecure=false
[[ "$registry" =~ ^(127\.0\.0\.1|localhost)(:[0-9]+)?/ ]] && insecure=true

build_options=()
push_options=()
if [[ "$engine" == podman ]]; then
  # Host networking: builds reach PyPI and Debian wherever the host does (no CNI bridge needed).
  build_options+=(--network host)
  if [[ -n "$ca_bundle" ]]; then
    mkdir -p containers/.cache
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > containers/.cache/pip.conf
    build_options+=(-v "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro" -v "$root/containers/.cache/pip.conf:/etc/pip.conf:ro")
  fi
  # The local registry is plain HTTP on this machine: zstd pushes the 6.5 GB torch parent in a
  # fraction of gzip's time (gzip stays the default for public registries, which every client reads).
  $insecure && push_options+=(--tls-verify=false --compression-format zstd)
fi
[[ -n "$base_image" ]] && build_options+=(--build-arg "BASE_IMAGE=$base_image")
if [[ -n "$base_image" ]]; then base_record="$base_image"; else base_record="python:3.11.11-slim-bookworm"; fi

python3 containers/pins.py meta "$lock" "registry=$registry" "engine=$engine" "base_image=$base_record"

image_digest() {  # the digest the registry serves for $1 (name:tag)
  local options=()
  $insecure && options+=(--tls-verify=false)
  skopeo inspect "${options[@]}" --format '{{.Digest}}' "docker://$1"
}

images="$(python3 containers/pins.py list)"
torch_tag="$(awk '$1 == "torch" {print $2}' <<<"$images")"
while read -r name tag parent; do
  if [[ -n "$only" && ",$only," != *",$name,"* ]]; then continue; fi
  ref="$registry/$name:$tag"
  args=()
  [[ "$parent" != - ]] && args+=(--build-arg "TORCH_IMAGE=$registry/$parent:$torch_tag")
  echo "== $ref (containers/$name)"
  echo "   free disk before: $(df -h --output=avail "$root" | tail -n 1 | tr -d ' ')"
  started=$(date +%s)
  "$engine" build "${build_options[@]}" "${args[@]}" -f "containers/$name/Dockerfile" -t "$ref" .
  seconds=$(( $(date +%s) - started ))
  size=$("$engine" image inspect --format '{{.Size}}' "$ref")
  facts=("tag=$tag" "build_seconds=$seconds" "size_bytes=$size")
  if $push; then
    pushed=$(date +%s)
    digest_file=$(mktemp)
    if [[ "$engine" == podman ]]; then
      podman push "${push_options[@]}" --digestfile "$digest_file" "$ref"
      digest=$(cat "$digest_file")
    else
      docker push "$ref"
      digest=$(docker image inspect --format '{{index .RepoDigests 0}}' "$ref"); digest="${digest#*@}"
    fi
    rm -f "$digest_file"
    if command -v skopeo >/dev/null 2>&1; then
      served=$(image_digest "$ref")
      [[ "$served" == "$digest" ]] || { echo "$ref: pushed $digest but the registry serves $served" >&2; exit 1; }
    fi
    facts+=("digest=$digest" "push_seconds=$(( $(date +%s) - pushed ))")
    echo "   $ref@$digest"
  fi
  python3 containers/pins.py record "$lock" "$name" "${facts[@]}"
  echo "   built in ${seconds}s, $(( size / 1000000 )) MB"
done <<<"$images"

if $pin; then
  python3 containers/pins.py pin "$lock"
  [[ "$lock" -ef containers/images.lock.json ]] || cp "$lock" containers/images.lock.json
fi
