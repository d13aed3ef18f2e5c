#!/usr/bin/env python3
"""The images containers/build.sh builds, their lock file, and the digest pins in the pipeline's configs.

Standard library only: it runs before the project's venv exists (.ci/run builds while setup.sh installs).

    python3 containers/pins.py list              one "name tag parent" line per image, in build order
    python3 containers/pins.py meta LOCK KEY=VALUE...          set the build's facts (registry, engine, ...)
    python3 containers/pins.py record LOCK NAME KEY=VALUE...   merge one image's facts into LOCK
    python3 containers/pins.py pin LOCK          write LOCK's digests into conf/models.yaml and nextflow.config
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
MODELS_YAML = ROOT / "conf" / "models.yaml"
NEXTFLOW_CONFIG = ROOT / "nextflow.config"
#: The lock file of the images built here, committed beside the pins it explains.
COMMITTED_LOCK = ROOT / "containers" / "images.lock.json"
#: A registry entry's image: `  container: name:tag[@sha256:...]`.
REGISTRY_LINE = re.compile(r"^(?P<head>\s+container:\s*)(?P<ref>\S+)(?P<tail>.*)$", re.M)
#: The light image: `process.container = "${params.container_registry}/name:tag[@sha256:...]"`.
LIGHT_LINE = re.compile(r'^(?P<head>process\.container\s*=\s*"\$\{params\.container_registry\}/)(?P<ref>[^"]+)(?P<tail>".*)$', re.M)
#: The parent image's tag is the default of the model Dockerfiles' TORCH_IMAGE argument.
TORCH_ARG = re.compile(r"^ARG TORCH_IMAGE=(?P<image>\S+)$", re.M)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
PARENT = "torch"


def split_ref(ref: str) -> Tuple[str, str, Optional[str]]:
    """``name:tag[@sha256:...]`` -> (name, tag, digest or None); a ref without a tag is an error."""
    image, _, digest = ref.partition("@")
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        raise ValueError(f"image '{ref}' has no tag (expected name:tag[@sha256:...])")
    if digest and not DIGEST.fullmatch(digest):
        raise ValueError(f"image '{ref}': '{digest}' is not a sha256 digest")
    return name, tag, digest or None


def registry_refs() -> Dict[str, str]:
    """conf/models.yaml's distinct `container:` values, by image name."""
    refs = {}
    for match in REGISTRY_LINE.finditer(MODELS_YAML.read_text()):
        refs[split_ref(match["ref"])[0]] = match["ref"]
    return refs


def light_ref() -> str:
    """The light image of nextflow.config's process.container (relative to --container_registry)."""
    match = LIGHT_LINE.search(NEXTFLOW_CONFIG.read_text())
    if match is None:
        raise ValueError(f"{NEXTFLOW_CONFIG}: no process.container line under ${{params.container_registry}}")
    return match["ref"]


def torch_tag() -> str:
    """The parent image's tag: the TORCH_IMAGE default every model Dockerfile shares."""
    tags = set()
    for dockerfile in sorted((ROOT / "containers").glob("*/Dockerfile")):
        match = TORCH_ARG.search(dockerfile.read_text())
        if match:
            name, tag, _ = split_ref(match["image"])
            if not name.endswith("/" + PARENT):
                raise ValueError(f"{dockerfile}: TORCH_IMAGE default '{match['image']}' is not a {PARENT} image")
            tags.add(tag)
    if len(tags) != 1:
        raise ValueError(f"the model Dockerfiles disagree on the TORCH_IMAGE tag: {sorted(tags)}")
    return tags.pop()


def uses_parent(name: str) -> bool:
    return TORCH_ARG.search((ROOT / "containers" / name / "Dockerfile").read_text()) is not None


def images() -> List[Dict[str, Optional[str]]]:
    """Every image to build, in build order: the light image, the parent, then the model images."""
    light_name, light_tag, light_digest = split_ref(light_ref())
    found = [{"name": light_name, "tag": light_tag, "pinned": light_digest, "parent": None},
             {"name": PARENT, "tag": torch_tag(), "pinned": None, "parent": None}]
    for name, ref in sorted(registry_refs().items()):
        if name in (light_name, PARENT):
            continue
        _, tag, digest = split_ref(ref)
        found.append({"name": name, "tag": tag, "pinned": digest, "parent": PARENT if uses_parent(name) else None})
    for image in found:
        if not (ROOT / "containers" / image["name"] / "Dockerfile").is_file():
            raise ValueError(f"image {image['name']}: no containers/{image['name']}/Dockerfile")
    return found


def read_lock(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"images": {}}


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def record(lock_path: Path, name: Optional[str], facts: Dict[str, str]) -> None:
    """Merge one image's facts (numbers stay numbers) into the lock file; name None: the build's own."""
    lock = read_lock(lock_path)
    entry = lock if name is None else lock["images"].setdefault(name, {})
    for key, value in facts.items():
        entry[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(lock_path, json.dumps(lock, indent=2, sort_keys=True) + "\n")


def pinned(ref: str, digest: str) -> str:
    name, tag, _ = split_ref(ref)
    return f"{name}:{tag}@{digest}"


def pin(lock_path: Path) -> List[str]:
    """Write the lock's digests into conf/models.yaml and nextflow.config; returns the new refs."""
    digests = {name: entry["digest"] for name, entry in read_lock(lock_path)["images"].items() if entry.get("digest")}

    def replace(match: "re.Match[str]") -> str:
        name = split_ref(match["ref"])[0]
        if name not in digests:
            raise ValueError(f"{lock_path}: no digest for image '{name}' (build and push it first)")
        return match["head"] + pinned(match["ref"], digests[name]) + match["tail"]

    write_atomically(MODELS_YAML, REGISTRY_LINE.sub(replace, MODELS_YAML.read_text()))
    write_atomically(NEXTFLOW_CONFIG, LIGHT_LINE.sub(replace, NEXTFLOW_CONFIG.read_text(), count=1))
    return sorted({light_ref(), *registry_refs().values()})


def main(argv: List[str]) -> int:
    if argv[:1] == ["list"]:
        for image in images():
            print(image["name"], image["tag"], image["parent"] or "-")
    elif argv[:1] == ["meta"] and len(argv) >= 2:
        record(Path(argv[1]), None, dict(item.split("=", 1) for item in argv[2:]))
    elif argv[:1] == ["record"] and len(argv) >= 3:
        record(Path(argv[1]), argv[2], dict(item.split("=", 1) for item in argv[3:]))
    elif argv[:1] == ["pin"] and len(argv) == 2:
        for ref in pin(Path(argv[1])):
            print(ref)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
