"""The JVM services' shared plumbing: the JDK 17 they run on, their jars from Maven Central, and
class-data sharing, and the jlink'ed runtimes of the Strimzi images.  Used by cassandra.py (the host's
Cassandra), strimzi.py and kafkaimage.py.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from . import commands, paths


def java() -> str:
    return str(paths.JAVA17_HOME / "bin" / "java")


def install_jars(component: str, pom: Path, home: Path) -> None:
    """Copy the runtime jars `pom` depends on into home/lib with Maven (idempotent).

    A marker holding the pom's hash makes reruns free and a changed pom re-copy.
    Maven's own ~/.m2 cache makes a re-copy cheap.  Used by cassandra.py and kafkaimage.py.
    """
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    marker = home / ".installed"
    if marker.exists() and marker.read_text().strip() == digest and (home / "lib").is_dir():
        return
    if not paths.which("mvn"):
        commands.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven",
                     f"{component} apt-get install maven", shell=True)
    tmp = home / "lib.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = dict(os.environ, JAVA_HOME=str(paths.JAVA17_HOME))
    commands.run(["mvn", "-B", "--no-transfer-progress", "-f", str(pom), "dependency:copy-dependencies",
                  "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
                 f"{component} jars from Maven Central", env=env,
                 log=paths.LOGS / f"install-{component.lower()}.log")
    lib = home / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    for old in home.glob("*.jsa"):      # class-data archives of the old jars
        old.unlink()
    marker.write_text(digest + "\n")


def cds_flags(name: str, home: Path) -> list[str]:
    """Application class-data sharing, to start the JVM faster (Kafka 4.5 -> 3 s, Cassandra 4.5 -> 3.5 s).

    The first run records every class it loaded into an archive when it exits
    (on `stop`, which then takes a few seconds longer); later runs map that
    archive instead of parsing the jars again.  The archive belongs to one JDK
    build and one classpath: install_jars() drops it when the jars change, and
    the JDK version is part of its name.  A JVM that finds it unusable warns
    and runs without it.  The classpath must hold jars only (no directories).
    """
    try:
        jdk = re.search(r'JAVA_RUNTIME_VERSION="([^"]+)"', (paths.JAVA17_HOME / "release").read_text()).group(1)
    except (OSError, AttributeError):
        return []
    archive = home / f"{name}-jdk{jdk}.jsa"
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}"]
    # (-Xlog: the dump warns about every class it cannot store: old class files, generated classes)
    return [f"-XX:ArchiveClassesAtExit={archive}", "-Xlog:cds=error,cds+dynamic=error"]


# --generate-cds-archive: the runtime's own class-data archive (faster JVM start, shared pages);
# zip-6: a smaller image.
JLINK_ARGS = ["--strip-debug", "--no-man-pages", "--no-header-files", "--compress", "zip-6", "--generate-cds-archive"]


def jlink(jdk: Path, modules: tuple[str, ...], dest: Path, what: str, log: Path) -> None:
    """dest: a Java runtime of `modules` made from `jdk` (for an image that then needs no JDK package)."""
    commands.run([str(jdk / "bin" / "jlink"), "--add-modules", ",".join(modules), *JLINK_ARGS, "--output", str(dest)],
                 f"{what} jlink runtime ({jdk.name})", log=log)
    (dest / "lib" / "server" / "classes_nocoops.jsa").unlink(missing_ok=True)   # only for heaps over 32 GB
    (dest / "modules.txt").write_text(",".join(modules) + "\n")
