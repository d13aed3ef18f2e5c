#!/usr/bin/env bash
# Build (and optionally push) every image the registry names, tagged as conf/models.yaml pins them.
#   containers/build.sh [--push] [--registry REGISTRY]
# REGISTRY defaults to the pipeline's --container_registry default (nextflow.config).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
push=false
registry="$(sed -n "s/^ *container_registry *= *'\(.*\)'.*/\1/p" nextflow.config)"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --push) push=true ;;
    --registry) registry="$2"; shift ;;
    *) echo "usage: $0 [--push] [--registry REGISTRY]" >&2; exit 2 ;;
  esac
  shift
done
# "<folder> <image:tag>" for every registry entry, plus the light base image.
python3 - <<'PY' > /tmp/czb_images.txt
import yaml
models = yaml.safe_load(open("conf/models.yaml"))["models"]
# The image name (before the tag) names its folder under containers/.
images = {(entry["container"].split(":")[0], entry["container"]) for entry in models.values()}
for folder, image in sorted(images):
    print(folder, image)
PY
while read -r folder image; do
  [[ -f "containers/$folder/Dockerfile" ]] || { echo "no containers/$folder/Dockerfile" >&2; exit 1; }
  echo "== $registry/$image (containers/$folder)"
  docker build -f "containers/$folder/Dockerfile" -t "$registry/$image" .
  if $push; then docker push "$registry/$image"; fi
done < /tmp/czb_images.txt
