"""The product image, built for real without a container registry.

The Dockerfile's default base is the public `python:3.11.x-slim-bookworm`; a
machine that cannot reach Docker Hub builds on a base made here instead:

1. `base_rootfs()`: a Debian bookworm minbase root with Python 3.11 and the
   venv module, made by `debootstrap` from Debian's mirror into the per-user
   cache (~/.cache/simplecqrs/rootfs/bookworm, about 200 MB);
2. `Dockerd`: Debian's dockerd (docker.io 20.10) started by hand, everything
   under .local/ (data in .local/data/docker, state in .local/run/docker,
   socket .local/run/docker.sock), no iptables, no bridge: containers and
   build steps use the host's network (`--network host`);
3. `build_image()`: `docker import` of the rootfs as simplecqrs-base:bookworm
   (once, or again when the rootfs was remade), a real BuildKit `docker build`
   of the Dockerfile FROM it (the host's CA bundle reaches pip as a build
   secret, never a layer), then `docker save` to an archive that
   `ctr -n k8s.io images import` takes.

    python -m scripts.stack.images build [--tag simplecqrs:dev] [--keep-dockerd]
    python -m scripts.stack.images rootfs | start | stop | status

The daemon's probes go through the docker SDK (docker_client); everything else through the
docker.io CLI.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click

from . import commands, console, containerd, core, errors, gotools, mounts, paths, processes
from .commandline import run_click

SUITE = "bookworm"
MIRROR = os.environ.get("SIMPLECQRS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("python3", "python3-venv", "ca-certificates")
ROOTFS = paths.CACHE / "rootfs" / SUITE
BASE_TAG = f"simplecqrs-base:{SUITE}"
BASE_LABEL = "io.simplecqrs.rootfs-id"
DEFAULT_TAG = "simplecqrs:dev"

# The docker.io client (20.10): its `docker build` speaks BuildKit itself.  A newer client on
# PATH (e.g. /usr/local/bin/docker 28.x) hands BuildKit builds to the buildx plugin, absent here.
DOCKER = os.environ.get("SIMPLECQRS_DOCKER_CLI", "/usr/bin/docker")
DOCKERD = "/usr/sbin/dockerd"
DOCKER_DATA = paths.DATA / "docker"
DOCKER_EXEC = paths.RUN / "docker"
DOCKER_SOCK = paths.RUN / "docker.sock"
IMAGES = paths.LOCAL / "images"                  # `docker save` archives for `ctr images import`
CA_BUNDLE = Path(os.environ.get("SIMPLECQRS_BUILD_CA", "/etc/ssl/certs/ca-certificates.crt"))
CA_SECRET_ID = "ca"                              # the Dockerfile's RUN --mount=type=secret,id=ca
BASE_ENV = {  # what the python:3.11 image's config provides and the Dockerfile relies on
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


def apt_install(*packages: str) -> None:
    commands.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                 f"--no-install-recommends {' '.join(packages)}", f"images apt-get install {' '.join(packages)}",
                 shell=True, log=paths.LOGS / "images-apt.log")


# ---------------------------------------------------------------- base root filesystem
def _remove_tree(path: Path) -> None:
    """rm -rf of a (possibly half-made) root, after unmounting what debootstrap left mounted in it."""
    mounts.unmount_under(path)
    if path.exists():
        shutil.rmtree(path)


def base_rootfs() -> Path:
    """The Debian bookworm minbase root with python3 + venv (idempotent, in the per-user cache)."""
    def python_link(root: Path) -> None:
        # `python` as in the python:3.11 image (the Dockerfile's deps stage runs `python -c ...`).
        link = root / "usr" / "local" / "bin" / "python"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to("/usr/bin/python3")

    return debian_root(SUITE, PACKAGES, ROOTFS, required=("usr/bin/python3", "usr/sbin/groupadd", "usr/sbin/useradd"),
                       finish=python_link)


def debian_root(suite: str, packages: tuple[str, ...], dest: Path, *, required: tuple[str, ...],
                finish=None) -> Path:
    """`debootstrap --variant=minbase` of `suite` with `packages` (and their dependencies) at `dest`.

    Idempotent: a root holding every `required` file is taken as made.  Built into a temporary
    directory and renamed into place when complete, so an interrupted run never leaves a
    half-made root where a later run would take it for finished.  `<dest>.id` changes whenever
    the root is remade (import_root() re-imports then)."""
    root_id = dest.with_name(f"{dest.name}.id")
    if all((dest / f).exists() for f in required):
        if not root_id.exists():
            root_id.write_text(uuid.uuid4().hex + "\n")
        return dest
    if not paths.which("debootstrap"):
        apt_install("debootstrap")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    _remove_tree(tmp)
    log = paths.LOGS / f"debootstrap-{dest.name}.log"
    commands.run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(tmp), MIRROR],
                 f"debootstrap {suite} minbase + {' '.join(packages)} (a few minutes)", log=log, timeout=1800)
    if left := mounts.mounts_under(tmp):
        raise errors.StackError("images", f"debootstrap left mounts in the new root: {left}")
    # Small: no package lists or downloaded .debs (nothing runs apt-get in it; a build that
    # would has to run `apt-get update` first, as with the python:3.11 image).
    for pattern in ("var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*",
                    "var/log/*.log", "var/log/apt/*", "usr/share/doc/*", "usr/share/man/*"):
        for p in tmp.glob(pattern):
            if p.is_file() or p.is_symlink():
                p.unlink()
            elif p.is_dir() and p.name != "partial":
                shutil.rmtree(p)
    if finish:
        finish(tmp)
    for f in required:
        if not (tmp / f).exists():
            raise errors.StackError("images", f"the new {suite} root has no /{f}", log)
    os.rename(tmp, dest)
    root_id.write_text(uuid.uuid4().hex + "\n")
    console.detail(f"{suite} root in {dest} ({_du(dest)})")
    return dest


def _du(path: Path) -> str:
    out = subprocess.run(["du", "-sh", "--one-file-system", str(path)], capture_output=True, text=True)
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout else "?"


# ---------------------------------------------------------------- dockerd
def docker_client(timeout: float = 10):
    """A client of the Docker Engine API (the docker SDK's low-level APIClient) on
    .local/run/docker.sock, speaking the API version the daemon offers (docker.io 20.10: 1.41).
    The probes use it; builds, imports and saves stay with the CLI (its BuildKit `docker build`
    takes the CA bundle as a build secret, which the SDK's build cannot pass)."""
    import docker  # imported when first needed: `make status` and `make down` seldom need it

    return docker.APIClient(base_url=f"unix://{DOCKER_SOCK}", version="auto", timeout=timeout)


def docker_env() -> dict:
    """The environment for the docker CLI against this checkout's dockerd."""
    return dict(os.environ, DOCKER_HOST=f"unix://{DOCKER_SOCK}", DOCKER_BUILDKIT="1",
                DOCKER_CONFIG=str(paths.ETC / "docker-cli"))


def docker(*args: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([DOCKER, *args], env=docker_env(), capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise errors.StackError("docker", f"`docker {shlex.join(args)[:200]}` exited {proc.returncode}: "
                                          f"{proc.stderr.strip()[-500:]}")
    return proc


class Dockerd(core.Component):
    """Debian's dockerd, one per checkout, started by hand (never the system service).

    It starts its own containerd (state under .local/run/docker/containerd, content under
    .local/data/docker/containerd); no bridge, no iptables rules, no TCP listener."""

    name = "dockerd"
    address = f"unix://{DOCKER_SOCK}"
    start_timeout = 60

    def install(self) -> None:
        if not (Path(DOCKERD).exists() and Path(DOCKER).exists() and paths.which("containerd")
                and paths.which("runc")):
            apt_install("docker.io")

    def start(self) -> None:
        if len(str(DOCKER_SOCK)) >= 108:
            raise errors.StackError(self.name, f"socket path longer than 107 bytes: {DOCKER_SOCK} "
                                               "(set SIMPLECQRS_LOCAL to a shorter directory)")
        if Path("/run/containerd/containerd.sock").exists():
            # dockerd without --containerd attaches to a containerd on that default address
            # instead of starting its own; this checkout's images must not land in that one.
            raise errors.StackError(self.name, "/run/containerd/containerd.sock exists: dockerd would use that "
                                               "containerd instead of its own; stop it or move its socket")
        for d in (DOCKER_DATA, DOCKER_EXEC):
            d.mkdir(parents=True, exist_ok=True)
        DOCKER_SOCK.unlink(missing_ok=True)
        processes.spawn(self.name, [
            DOCKERD,
            f"--data-root={DOCKER_DATA}",
            f"--exec-root={DOCKER_EXEC}",
            f"--pidfile={DOCKER_EXEC / 'dockerd.pid'}",   # not processes.py's .local/run/dockerd.pid (that one is ours)
            f"--host=unix://{DOCKER_SOCK}",
            "--storage-driver=overlay2",
            "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none",
            "--userland-proxy=false",
        ])

    def ready(self) -> bool:
        with docker_client(timeout=3) as client:
            return client.ping()

    def version(self) -> str:
        with docker_client(timeout=3) as client:
            return client.version()["Version"]

    def stop(self) -> None:
        processes.stop(self.name, timeout=60)
        mounts.unmount_under(DOCKER_EXEC)  # its netns/default bind mount outlives it


def ensure_dockerd() -> bool:
    """Install and start this checkout's dockerd if needed; True if it was started here."""
    d = Dockerd()
    if d.running() and d._ready_quietly():
        return False
    d.install()
    d.up()
    return True


# ---------------------------------------------------------------- images
def image_label(ref: str, label: str) -> str | None:
    proc = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', ref, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def import_base(rootfs: Path) -> str:
    """The bookworm root as simplecqrs-base:bookworm, with the python:3.11 image's CMD and ENV."""
    return import_root(rootfs, BASE_TAG, ['CMD ["python3"]', *(f"ENV {k}={v}" for k, v in BASE_ENV.items())])


def import_root(rootfs: Path, tag: str, changes: list[str] | tuple[str, ...] = ()) -> str:
    """`docker import` a root made by debian_root() as `tag`, unless that image is already this root."""
    id_file = rootfs.with_name(f"{rootfs.name}.id")
    rootfs_id = id_file.read_text().strip() if id_file.exists() else "unknown"
    if image_label(tag, BASE_LABEL) == rootfs_id:
        console.detail(f"{tag} is up to date with {rootfs}")
        return tag
    changes = [f"LABEL {BASE_LABEL}={rootfs_id}", *changes]
    script = (f"tar -C {shlex.quote(str(rootfs))} --numeric-owner --one-file-system "
              "--exclude=./proc/* --exclude=./sys/* --exclude=./dev/* -c . | "
              f"{shlex.quote(DOCKER)} import {' '.join('--change ' + shlex.quote(c) for c in changes)} - {tag}")
    commands.run(["bash", "-o", "pipefail", "-c", script], f"images docker import {rootfs} as {tag}",
                 env=docker_env(), log=paths.LOGS / "images-import.log", timeout=600)
    return tag


def archive_path(tag: str) -> Path:
    return IMAGES / (tag.replace("/", "_").replace(":", "_") + ".tar")


def build_image(tag: str = DEFAULT_TAG, *, context: Path = paths.ROOT, dockerfile: Path | None = None,
                target: str | None = None, base_arg: str | None = "PYTHON_IMAGE",
                build_args: dict[str, str] | None = None) -> Path:
    """A real `docker build`; returns the `docker save` archive (`ctr -n k8s.io images import` takes it).

    By default the product's Dockerfile with its base (build argument PYTHON_IMAGE) set to the
    Debian root made here; `dockerfile`/`target` build another Dockerfile's stage, `base_arg` names
    its base-image build argument (None: it needs no base, e.g. FROM scratch).  Starts dockerd if it
    is not running (and leaves it running: `Dockerd().stop()` or `python -m scripts.stack.images stop`)."""
    ensure_dockerd()
    argv = [DOCKER, "build", "--progress=plain", "--network=host", "-f", str(dockerfile or context / "Dockerfile"),
            "-t", tag]
    if target:
        argv += ["--target", target]
    if base_arg:
        argv += ["--build-arg", f"{base_arg}={import_base(base_rootfs())}"]
    for k, v in (build_args or {}).items():
        argv += ["--build-arg", f"{k}={v}"]
    if CA_BUNDLE.is_file():
        argv += ["--secret", f"id={CA_SECRET_ID},src={CA_BUNDLE}"]
    argv.append(str(context))
    commands.run(argv, f"images docker build {tag}" + (f" (FROM {BASE_TAG})" if base_arg else ""), env=docker_env(),
                 log=paths.LOGS / "images-build.log", timeout=1800)
    IMAGES.mkdir(parents=True, exist_ok=True)
    archive = archive_path(tag)
    saved = archive.with_suffix(".id")     # the image id the archive holds: an unchanged build is not saved again
    image_id = docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    if archive.exists() and saved.exists() and saved.read_text().strip() == image_id:
        console.detail(f"{archive} already holds {tag} ({image_id[:19]})")
        return archive
    saved.unlink(missing_ok=True)
    tmp = archive.with_suffix(".tar.tmp")
    commands.run([DOCKER, "save", "-o", str(tmp), tag], f"images docker save {tag}", env=docker_env(),
                 log=paths.LOGS / "images-build.log", timeout=600)
    os.replace(tmp, archive)
    saved.write_text(image_id + "\n")
    console.detail(f"{tag}: {archive} ({archive.stat().st_size / 2**20:.0f} MiB)")
    return archive


# ---------------------------------------------------------------- the node's own images
# Each a stage of dockerfiles/node.Dockerfile, imported into the node's containerd unless there: the
# add-ons' (addons.py) and the pause image, `build/pause/linux/pause.c` of the k8s.io/kubernetes
# module built with `gcc -static` as upstream's build/pause/Makefile does, tagged as the sandbox
# image containerd asks for (containerd.PAUSE_IMAGE).
NODE_DOCKERFILE = Path(__file__).resolve().parent / "dockerfiles" / "node.Dockerfile"
PAUSE_VERSION = containerd.PAUSE_IMAGE.rsplit(":", 1)[1]


def pause_binary() -> Path:
    out = paths.CACHE / "bin" / f"pause-{PAUSE_VERSION}"
    if out.exists():
        return out
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    source = Path(modcache) / f"k8s.io/kubernetes@{gotools.K8S_VERSION}" / "build/pause/linux/pause.c"
    if not source.exists():
        raise errors.StackError("pause", f"{source} missing (gotools builds download the k8s.io/kubernetes module)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    commands.run(["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{PAUSE_VERSION}-simplecqrs",
                  "-o", str(tmp), str(source)], "building pause (gcc -static)")
    subprocess.run(["strip", str(tmp)], check=False)
    tmp.replace(out)
    return out


@dataclass(frozen=True)
class NodeImage:
    ref: str          # the name upstream manifests use, e.g. registry.k8s.io/pause:3.10
    stage: str        # its stage in dockerfiles/node.Dockerfile; the binary's name in the build context
    binary: Path | None = None   # None: the stage needs no file (it is FROM the Debian base)


def pause_image() -> NodeImage:
    return NodeImage(containerd.PAUSE_IMAGE, "pause", pause_binary())


def ensure_node_image(image: NodeImage) -> None:
    """`docker build --target <stage>` of node.Dockerfile, imported unless containerd has the image."""
    if containerd.image_present(image.ref):
        return
    context = paths.LOCAL / "build" / image.stage       # just the one binary: a small build context
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    if image.binary is not None:
        paths.link_or_copy(image.binary, context / image.stage)
    archive = build_image(image.ref, context=context, dockerfile=NODE_DOCKERFILE, target=image.stage,
                                 base_arg="BASE_IMAGE" if image.binary is None else None)
    containerd.import_image(archive, image.ref)
    shutil.rmtree(context, ignore_errors=True)


def build_into_node(repository: str, **build_kwargs) -> str:
    """build_image() as `<repository>:dev`, then into the node's containerd under a tag derived from
    the image id, `<repository>:dev-<id12>` (a changed image gets a new tag, so pods using it roll;
    an unchanged one is not imported again).  Returns that reference."""
    build_tag = f"{repository}:dev"
    archive = build_image(build_tag, **build_kwargs)
    image_id = docker("image", "inspect", "-f", "{{.Id}}", build_tag).stdout.strip()
    ref = f"{repository}:dev-{image_id.split(':')[-1][:12]}"
    if not containerd.image_present(ref):
        containerd.import_image(archive, build_tag)
        containerd.tag_image(build_tag, ref)
    return ref


# ---------------------------------------------------------------- CLI
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             help=__doc__.split("\n\n")[0])
def command() -> None:
    pass


@command.command("build", help="build the image; prints the `docker save` archive's path")
@click.option("--tag", default=lambda: os.environ.get("IMAGE", DEFAULT_TAG),
              help=f"image tag (default: $IMAGE, as skaffold's custom builder sets it, else {DEFAULT_TAG})")
@click.option("--keep-dockerd", is_flag=True, help="leave dockerd running if this command started it")
def cmd_build(tag: str, keep_dockerd: bool) -> None:
    paths.ensure_dirs()
    started = ensure_dockerd()
    t0 = time.monotonic()
    try:
        archive = build_image(tag)
    finally:
        if started and not keep_dockerd:
            Dockerd().stop()
    console.detail(f"built in {time.monotonic() - t0:.0f}s")
    print(archive)


@command.command("rootfs", help="make the base root filesystem; prints its path")
def cmd_rootfs() -> None:
    paths.ensure_dirs()
    print(base_rootfs())


@command.command("start", help="start this checkout's dockerd")
def cmd_start() -> None:
    paths.ensure_dirs()
    ensure_dockerd()


@command.command("stop", help="stop this checkout's dockerd")
def cmd_stop() -> None:
    paths.ensure_dirs()
    Dockerd().stop()


@command.command("status", help="dockerd's state")
def cmd_status() -> None:
    paths.ensure_dirs()
    core.print_table([Dockerd().status()])


def main(argv: list[str] | None = None) -> int:
    """`python -m scripts.stack.images`: 0, 1 with one line for a StackError, 2 for a usage error, 130 when
    interrupted."""
    return run_click(command, argv, "python -m scripts.stack.images")


if __name__ == "__main__":
    sys.exit(main())
