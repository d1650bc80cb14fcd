"""skaffold's custom builder for the local node (skaffold.yaml, profile `local`).

skaffold runs `python -m scripts.skaffold_build` with IMAGE (the tag it chose) and BUILD_CONTEXT.
This builds the image with the stack's dockerd (a real `docker build` of the Dockerfile on the
base made here) and hands it to the node's containerd, under the tag skaffold chose and under the
one it then deploys: with `push: false`, skaffold deploys `<repository>:<image id>` (it tags the
image by its ID in the Docker daemon), and the node has no Docker daemon, so that tag is made in
containerd too (a `docker save` keeps the image ID: it is the config's digest).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from scripts.stack import containerd, errors, images, paths


def main() -> int:
    tag = os.environ["IMAGE"]
    context = Path(os.environ.get("BUILD_CONTEXT", paths.ROOT))
    archive = images.build_image(tag, context=context)
    image_id = images.docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    containerd.import_image(archive, tag)
    repository = tag.rsplit(":", 1)[0] if ":" in tag.rsplit("/", 1)[-1] else tag
    containerd.tag_image(tag, f"{repository}:{image_id.removeprefix('sha256:')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except errors.StackError as e:
        print(f"ERROR {e}", file=sys.stderr)
        sys.exit(1)
