"""The chart's development stores (values-dev.yaml) as images built here for the local node.

A kind or minikube user's cluster pulls Docker Hub's mysql and cassandra images for
`mysql.deploy` and `cassandra.deploy`; no registry is reachable here, so
dockerfiles/dev-stores.Dockerfile builds images with the same contract: MySQL 9.7 from the
Debian sid root the host's MySQL runs from (mysql.py), Cassandra on the Debian base (images.py)
from the jars the host node runs (cassandra.py: same jars, same JVM flags, same configuration).  `helm_values()` gives
the `--set` lines that point the chart at them; the StatefulSets' volumes come from the node's
default StorageClass (addons.LocalPath).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from . import cassandra, images, mysql, paths

DOCKERFILE = Path(__file__).resolve().parent / "dockerfiles" / "dev-stores.Dockerfile"
CONTEXT = paths.LOCAL / "build" / "dev-stores"
REPOSITORIES = {"mysql": "simplecqrs/dev-mysql", "cassandra": "simplecqrs/dev-cassandra"}
MYSQL_BASE_TAG = "simplecqrs-base:sid-mysql"


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        paths.link_or_copy(f, dst / f.name)


def _context() -> Path:
    """Entrypoints, Cassandra's jars and its configuration rendered for the container's paths."""
    cassandra.Cassandra().install()           # the jars (per-user cache)
    shutil.rmtree(CONTEXT, ignore_errors=True)
    conf = CONTEXT / "cassandra" / "conf"
    conf.mkdir(parents=True)
    for entrypoint in ("mysql-entrypoint.sh", "cassandra-entrypoint.py"):
        shutil.copy2(DOCKERFILE.parent / entrypoint, CONTEXT / entrypoint)
    _link_tree(cassandra.LIB, CONTEXT / "cassandra" / "lib")
    (conf / "cassandra.yaml").write_text(cassandra.CASSANDRA_YAML.format(
        port=cassandra.PORT, storage_port=cassandra.STORAGE_PORT, data="/var/lib/cassandra"))
    (conf / "logback.xml").write_text(cassandra.LOGBACK_XML.format())
    (conf / "jvm.options").write_text("# scripts/stack/cassandra.py JVM_FLAGS\n" + "\n".join(cassandra.JVM_FLAGS) + "\n")
    return CONTEXT


def build() -> dict[str, str]:
    """Build both images into the node's image store; {"mysql": ref, "cassandra": ref}."""
    context = _context()
    mysql.OracleMySQL().install()             # the sid root (per-user cache)
    base = {"MYSQL_BASE": images.import_root(mysql.ROOT, MYSQL_BASE_TAG)}
    try:
        return {stage: images.build_into_node(repo, context=context, dockerfile=DOCKERFILE, target=stage,
                                              base_arg="BASE_IMAGE", build_args=base)
                for stage, repo in REPOSITORIES.items()}
    finally:
        shutil.rmtree(context, ignore_errors=True)


def helm_values(refs: dict[str, str]) -> list[str]:
    """`helm --set` arguments that make values-dev.yaml's stores use the images built here."""
    return ["--set", f"mysql.deploy.image={refs['mysql']}", "--set", f"cassandra.deploy.image={refs['cassandra']}"]


if __name__ == "__main__":
    # `python -m scripts.stack.devstores`: build both, print the helm arguments (README, "values-dev").
    paths.ensure_dirs()
    print(" ".join(helm_values(build())))
