"""Strimzi's Kafka image, in the layout of quay.io/strimzi/kafka:1.2.0-kafka-4.3.1, built here.

Strimzi's Cluster Operator (strimzi.py) runs the brokers as pods from an image with Strimzi's
layout: Kafka's binary distribution in /opt/kafka (bin/, config/, libs/), Strimzi's scripts beside
it (kafka_run.sh, the readiness and liveness probes, ...), the Strimzi Kafka agent and Strimzi's
third-party libraries in libs/, user 1001 in group 0, tini.  No container registry is reachable,
and Kafka's binary distribution is not on Maven Central, so the build context is assembled in the
per-user cache (HOME, remade only when its inputs change) from:
- libs/: Kafka 4.3.1's jars from Maven Central (scripts/maven/strimzi-kafka/pom.xml: the broker,
  the CLI tools, the log4j2 backend the distribution adds, what the agent needs at runtime);
- Strimzi's third-party libraries: Strimzi's own pom (docker-images/artifacts/kafka-thirdparty-libs/
  4.3.x/pom.xml), read from Strimzi's source (strimzi.SOURCE) at build time, less the artifacts
  Maven Central does not serve (THIRD_PARTY_DROPPED) and less the jars Kafka's libs already hold
  (as Strimzi's image build: the same file copied over itself);
- bin/ and config/: Kafka's scripts from the vendored ../shared/vendor/kafka-bin-config-*.tar.gz
  (they are not on Maven Central either), each main class they name checked against the jars;
- Strimzi's scripts (docker-images/kafka-based/kafka/scripts/) from the same Strimzi source;
- kafka-agent-1.2.0.jar, built by strimzi.build() with the operators;
- jre/: a Java runtime made with jlink from the JDK Strimzi is built with (Temurin 25): the agent
  is compiled for Java 21 (class files major 65), which Debian bookworm's OpenJDK 17 cannot load.
The image is dockerfiles/kafka.Dockerfile on the Debian base images.py makes.  `image()` builds it
into the node's containerd and returns a reference the Cluster Operator's naming can produce:
`<REPOSITORY>:<prefix>-kafka-4.3.1` (Strimzi's chart: `<name>:<tagPrefix>-kafka-<version>`), the
prefix derived from the image id, so a changed image rolls the brokers.

    python -m scripts.stack.kafkaimage            # build (context, image, node import); prints the reference
    python -m scripts.stack.kafkaimage context    # only the build context; prints its directory
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import click

from . import console, containerd, errors, images, jvm, paths, strimzi
from .commandline import run_click

KAFKA_VERSION = strimzi.KAFKA_VERSION  # Strimzi 1.2.0's default (its kafka-versions.yaml)
STRIMZI_VERSION = strimzi.VERSION      # the agent and the scripts come from that build and source
THIRD_PARTY_LIBS = "4.3.x"            # kafka-versions.yaml's third-party-libs for 4.3.1
REPOSITORY = "simplecqrs-kafka"
TAG_SUFFIX = f"-kafka-{KAFKA_VERSION}"   # what the Cluster Operator appends to the chart's tagPrefix

HERE = Path(__file__).resolve().parent
DOCKERFILE = HERE / "dockerfiles" / "kafka.Dockerfile"
POM = paths.ROOT / "scripts" / "maven" / "strimzi-kafka" / "pom.xml"
BIN_CONFIG = Path(os.environ.get("SIMPLECQRS_KAFKA_BIN_CONFIG")
                  or paths.ROOT.parent / "shared" / "vendor" / "kafka-bin-config-1eb7644.tar.gz")
HOME = paths.CACHE / f"kafka-image-{KAFKA_VERSION}"            # the build context
WORK = paths.CACHE / "build" / f"kafka-image-{KAFKA_VERSION}"  # Maven's copies of the jars (kept between runs)
LOG = paths.LOGS / "install-kafka-image.log"
BUILD_ARGS = {"KAFKA_VERSION": KAFKA_VERSION, "STRIMZI_VERSION": STRIMZI_VERSION}
LAYOUT = 1                            # bump when the assembly below changes what HOME holds

# Paths inside Strimzi's source tree.
THIRD_PARTY_POM = f"docker-images/artifacts/kafka-thirdparty-libs/{THIRD_PARTY_LIBS}/pom.xml"
SCRIPTS = "docker-images/kafka-based/kafka/scripts/"

# Strimzi's third-party pom, less what Maven Central does not serve (checked 2026-12-05 with Maven
# 3.8.7 against https://repo.maven.apache.org/maven2):
#  - kafka-oauth-common, -server, -server-plain, -client, -keycloak-authorizer 0.18.0: "Could not find
#    artifact io.strimzi:kafka-oauth-common:jar:0.18.0 in central" (Central's newest is 0.17.1);
#  - io.strimzi:server-metrics-reporter 0.4.0: not on Central at all (no maven-metadata.xml, 404);
#  - io.strimzi:kafka-quotas-plugin 0.4.0: not on Central (its newest there is 0.3.1);
#  - com.linkedin.cruisecontrol:cruise-control-metrics-reporter 2.5.146: only in the repository the pom
#    declares, https://linkedin.jfrog.io/artifactory/cruise-control/, unreachable here ("Unknown host
#    linkedin.jfrog.io"); that <repositories> entry is removed too, because with it Maven tries that
#    host first for every artifact and fails ("Could not transfer artifact
#    io.strimzi:kafka-oauth-common:pom:0.18.0 from/to cruise-control ... Unknown host linkedin.jfrog.io").
# So a Kafka resource here cannot use OAuth authentication or authorization, Cruise Control, the
# Strimzi metrics reporter or the Strimzi quotas plugin; none is used.  Kept: the Kubernetes
# configuration provider (io.strimzi.kafka.KubernetesSecretConfigProvider, which the broker
# configuration the Cluster Operator writes names) with its fabric8 client (the agent reads Secrets
# with it too), OpenTelemetry, the Prometheus client, log4j's JSON template layout.
THIRD_PARTY_DROPPED = (
    "io.strimzi:kafka-oauth-common", "io.strimzi:kafka-oauth-server", "io.strimzi:kafka-oauth-server-plain",
    "io.strimzi:kafka-oauth-client", "io.strimzi:kafka-oauth-keycloak-authorizer",
    "com.linkedin.cruisecontrol:cruise-control-metrics-reporter",
    "io.strimzi:server-metrics-reporter", "io.strimzi:kafka-quotas-plugin",
)
MAVEN_DEPENDENCY_PLUGIN = "3.8.1"     # pinned in the rewritten pom (Strimzi's leaves Maven's default)

# The vendored bin/ is Kafka trunk of 2024-10-25 (4.0.0-SNAPSHOT).  Since then, in 4.0, two tools moved
# from the Scala core to the tools module, and ZooKeeper was removed (its scripts name classes no
# 4.x jar has; 4.x's distribution has none of them).  _fix_bin() rewrites those two class names in
# their scripts (a sed, in effect) and leaves the ZooKeeper scripts out, and trogdor.sh (Kafka's
# fault-injection test framework: its jar is not in the pom); any other class a script names that
# the jars lack fails the build.  kafka-server-start.sh (kafka.Kafka), kafka-storage.sh
# (kafka.tools.StorageTool) and kafka-run-class.sh (kafka.Kafka, in its native mode) name classes that
# 4.3.1 still has where they name them.
CLASS_MOVES = {"kafka.admin.AclCommand": "org.apache.kafka.tools.AclCommand",
               "kafka.tools.DumpLogSegments": "org.apache.kafka.tools.DumpLogSegments"}
REMOVED_SCRIPTS = ("zookeeper-security-migration.sh", "zookeeper-server-start.sh", "zookeeper-server-stop.sh",
                   "zookeeper-shell.sh", "trogdor.sh")

# The Java runtime's modules: the SE platform (java.desktop included: commons-beanutils uses java.beans)
# and the JDK modules a broker, its tools and agents use: JMX and its remote agent
# (set_kafka_jmx_options.sh), Kerberos and JAAS (SASL GSSAPI), DNS naming, the HTTP server (the
# Prometheus exporter), sun.misc.Unsafe, zip file systems, JFR, jcmd and the debug agent
# (KAFKA_DEBUG).  A fixed superset rather than jdeps: given the jars, jdeps stops at the modular ones
# whose requirements are plain jars ("Module org.slf4j not found, required by org.eclipse.jetty.util");
# given them as --class-path with --recursive from the broker, tools, agent and provider jars it
# works, but finds only what is referenced statically (java.base, java.compiler, java.desktop,
# java.management, java.naming, java.rmi, java.scripting, java.security.jgss, java.security.sasl,
# java.sql, jdk.unsupported), not what is loaded by name: fabric8's JDK HTTP client (java.net.http,
# a ServiceLoader), the agent (java.instrument), the JMX remote agent, the DNS naming provider.
JAVA_MODULES = ("java.se", "jdk.attach", "jdk.charsets", "jdk.crypto.ec", "jdk.httpserver", "jdk.jcmd", "jdk.jdi",
                "jdk.jdwp.agent", "jdk.jfr", "jdk.management", "jdk.management.agent", "jdk.management.jfr",
                "jdk.naming.dns", "jdk.naming.rmi", "jdk.net", "jdk.security.auth", "jdk.security.jgss",
                "jdk.unsupported", "jdk.zipfs")


# ---------------------------------------------------------------- inputs
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _strimzi_files() -> dict[str, tuple[bytes, int]]:
    """What this image takes from Strimzi's source (strimzi.SOURCE, a tarball or a tree): the
    third-party pom and the scripts, as {path in the source: (content, mode)}."""
    def wanted(rel: str) -> bool:
        return rel == THIRD_PARTY_POM or (rel.startswith(SCRIPTS) and "/" not in rel[len(SCRIPTS):])

    source = strimzi.SOURCE
    files: dict[str, tuple[bytes, int]] = {}
    if source.is_file():
        with tarfile.open(source) as tar:
            for m in tar.getmembers():
                rel = m.name.removeprefix("./")
                if not rel.startswith("docker-images/"):          # GitHub's archives: <repo>-<tag>/...
                    rel = rel.split("/", 1)[-1]
                if m.isfile() and wanted(rel):
                    files[rel] = (tar.extractfile(m).read(), m.mode & 0o777)
    elif (source / THIRD_PARTY_POM).is_file():
        for path in [source / THIRD_PARTY_POM, *sorted((source / SCRIPTS).iterdir())]:
            if path.is_file():
                files[path.relative_to(source).as_posix()] = (path.read_bytes(), path.stat().st_mode & 0o777)
    if THIRD_PARTY_POM not in files or not any(k.startswith(SCRIPTS) for k in files):
        raise errors.StackError("kafka-image", f"{source} has no {THIRD_PARTY_POM} or no {SCRIPTS}")
    return files


def agent_jar() -> Path:
    """Strimzi's Kafka agent, as strimzi.build() leaves it (built with the operators)."""
    jar = strimzi.build() / "kafka-agent" / f"kafka-agent-{STRIMZI_VERSION}.jar"
    if not jar.is_file():
        raise errors.StackError("kafka-image", f"strimzi.build() left no {jar}")
    return jar


def _jdk() -> tuple[Path, str]:
    """The JDK the runtime is jlinked from (Strimzi's build JDK) and its JAVA_VERSION (21 or newer)."""
    try:
        version = re.search(r'^JAVA_VERSION="([^"]+)"', (strimzi.JDK / "release").read_text(), re.M).group(1)
    except (OSError, AttributeError):
        version = "none"
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 21:
        raise errors.StackError("kafka-image", f"the Kafka image's Java runtime needs a JDK 21 or newer at {strimzi.JDK} "
                                               f"(found: {version}): Strimzi's kafka-agent is compiled for Java 21")
    return strimzi.JDK, version


def _key(strimzi_files: dict[str, tuple[bytes, int]], agent: Path, jdk_version: str) -> str:
    """Everything HOME is made from."""
    h = hashlib.sha256(json.dumps([LAYOUT, KAFKA_VERSION, STRIMZI_VERSION, THIRD_PARTY_DROPPED, CLASS_MOVES,
                                   REMOVED_SCRIPTS, JAVA_MODULES, jvm.JLINK_ARGS, MAVEN_DEPENDENCY_PLUGIN,
                                   jdk_version]).encode())
    h.update(POM.read_bytes())
    for name, (data, mode) in sorted(strimzi_files.items()):
        h.update(f"{name} {mode:o} {len(data)}\n".encode() + data)
    h.update(_sha256_file(BIN_CONFIG).encode())
    h.update(_sha256_file(agent).encode())
    return h.hexdigest()


# ---------------------------------------------------------------- assembly
def third_party_pom(strimzi_pom: bytes) -> bytes:
    """Strimzi's third-party pom without the artifacts Maven Central does not serve, without its
    <repositories>, and with the dependency plugin pinned."""
    ns = "http://maven.apache.org/POM/4.0.0"

    def q(tag: str) -> str:
        return f"{{{ns}}}{tag}"

    ET.register_namespace("", ns)
    root = ET.fromstring(strimzi_pom)
    deps = root.find(q("dependencies"))
    dropped = set()
    for dep in list(deps):
        ga = f"{dep.findtext(q('groupId'))}:{dep.findtext(q('artifactId'))}"
        if ga in THIRD_PARTY_DROPPED:
            deps.remove(dep)
            dropped.add(ga)
    if missing := set(THIRD_PARTY_DROPPED) - dropped:
        raise errors.StackError("kafka-image", f"Strimzi's {THIRD_PARTY_POM} no longer lists {sorted(missing)}: "
                                               "revisit THIRD_PARTY_DROPPED")
    for repos in root.findall(q("repositories")):
        root.remove(repos)
    build = root.find(q("build"))
    if build is None:
        build = ET.SubElement(root, q("build"))
    management = build.find(q("pluginManagement"))
    if management is None:
        management = ET.SubElement(build, q("pluginManagement"))
    plugins = management.find(q("plugins"))
    if plugins is None:
        plugins = ET.SubElement(management, q("plugins"))
    plugin = ET.SubElement(plugins, q("plugin"))
    for tag, text in (("groupId", "org.apache.maven.plugins"), ("artifactId", "maven-dependency-plugin"),
                      ("version", MAVEN_DEPENDENCY_PLUGIN)):
        ET.SubElement(plugin, q(tag)).text = text
    header = (f"<!-- Generated by scripts/stack/kafkaimage.py from Strimzi {STRIMZI_VERSION}'s {THIRD_PARTY_POM}:\n"
              f"     without {', '.join(THIRD_PARTY_DROPPED)} (not on Maven Central) and its repositories. -->\n")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + header.encode() + ET.tostring(root)


def _extract_bin_config(dest: Path) -> None:
    """bin/ (no windows/), config/, LICENSE and NOTICE of the vendored tarball into dest (regular
    files only, each path checked)."""
    with tarfile.open(BIN_CONFIG) as tar:
        for m in tar.getmembers():
            parts = Path(m.name.removeprefix("./")).parts
            if parts and parts[0] not in ("bin", "config", "LICENSE", "NOTICE"):
                parts = parts[1:]                      # the tarball's top directory (kafka/)
            if not m.isfile() or not parts or parts[0] not in ("bin", "config", "LICENSE", "NOTICE") \
                    or ".." in parts or (len(parts) > 1 and parts[1] == "windows"):
                continue
            out = dest.joinpath(*parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(m).read())
            out.chmod(m.mode & 0o755)
    if not (dest / "bin" / "kafka-run-class.sh").is_file():
        raise errors.StackError("kafka-image", f"{BIN_CONFIG} has no bin/kafka-run-class.sh")


def _classes(jars: list[Path]) -> dict[str, dict[int, str]]:
    """class file name -> {CRC-32 of its content: jar}, over `jars` (module-info and the
    multi-release versions/ copies left out, as Strimzi's find-colliding-classes.sh does)."""
    found: dict[str, dict[int, str]] = {}
    for jar in jars:
        with zipfile.ZipFile(jar) as z:
            for info in z.infolist():
                name = info.filename
                if name.endswith(".class") and info.file_size and not name.endswith("module-info.class") \
                        and not name.startswith("META-INF/versions/"):
                    found.setdefault(name, {}).setdefault(info.CRC, jar.name)
    return found


def _fix_bin(bin_dir: Path, classes: dict[str, dict[int, str]]) -> list[str]:
    """Point the scripts at the classes 4.3.1 has (CLASS_MOVES), leave out REMOVED_SCRIPTS, and fail
    on any other script whose main class no jar holds.  Returns what was changed."""
    changes = []
    for name in REMOVED_SCRIPTS:
        if (bin_dir / name).exists():
            (bin_dir / name).unlink()
            changes.append(f"removed bin/{name}")
    missing = []
    for script in sorted(bin_dir.glob("*.sh")):
        text = script.read_text()
        for old, new in CLASS_MOVES.items():
            if re.search(rf"kafka-run-class\.sh\b.*\s{re.escape(old)}\b", text):
                text = re.sub(rf"(\s){re.escape(old)}\b", rf"\g<1>{new}", text)
                script.write_text(text)
                changes.append(f"bin/{script.name}: {old} -> {new}")
        for main in re.findall(r"kafka-run-class\.sh\b[^\n]*?\s((?:[a-z_]\w*\.)+[A-Z]\w*)", text):
            if main.replace(".", "/") + ".class" not in classes:
                missing.append(f"bin/{script.name}: {main}")
    run_class = (bin_dir / "kafka-run-class.sh").read_text()
    if '"kafka.Kafka"' in run_class and "kafka/Kafka.class" not in classes:
        missing.append("bin/kafka-run-class.sh: kafka.Kafka")
    if missing:
        raise errors.StackError("kafka-image", f"main classes not in Kafka {KAFKA_VERSION}'s jars: {', '.join(missing)}")
    return changes


def _check_collisions(kafka_classes: dict[str, dict[int, str]], added: list[Path]) -> None:
    """As Strimzi's find-classpath-collision.sh: a class in an added jar (third-party, agent) that
    Kafka's libs or another added jar also hold with other content fails the build.  Collisions
    among Kafka's own jars (its distribution has them too: javax/jakarta activation) are ignored."""
    added_classes = _classes(added)
    collisions = []
    for name, crcs in added_classes.items():
        everywhere = {**kafka_classes.get(name, {}), **crcs}
        if len(everywhere) > 1:
            collisions.append(f"{name} ({', '.join(sorted(set(everywhere.values())))})")
    if collisions:
        raise errors.StackError("kafka-image", f"{len(collisions)} classes with different content in two jars: "
                                               f"{'; '.join(collisions[:10])}", LOG)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_context(agent: Path | None = None) -> Path:
    """The image's build context in HOME, made unless up to date; returns HOME.

    HOME holds kafka/ (Kafka's distribution layout: bin/, config/, libs/, LICENSE, NOTICE), scripts/
    (Strimzi's), agent/ (kafka-agent-1.2.0.jar), thirdparty-libs/ and jre/.  `agent`: another
    kafka-agent jar instead of strimzi.build()'s (tests only)."""
    agent = agent or agent_jar()
    strimzi_files = _strimzi_files()
    jdk, jdk_version = _jdk()
    key = _key(strimzi_files, agent, jdk_version)
    marker = HOME / ".installed"
    if marker.exists() and marker.read_text().strip() == key:
        return HOME
    t0 = time.monotonic()
    console.say(f"Kafka {KAFKA_VERSION} image context, Strimzi {STRIMZI_VERSION} layout, into {HOME}")
    # The jars, by Maven (each copy cached under WORK until its pom changes).
    jvm.install_jars("kafka-image", POM, WORK / "kafka")
    tp_pom = WORK / "thirdparty" / "pom.xml"
    tp_pom.parent.mkdir(parents=True, exist_ok=True)
    content = third_party_pom(strimzi_files[THIRD_PARTY_POM][0])
    if not tp_pom.exists() or tp_pom.read_bytes() != content:
        tp_pom.write_bytes(content)
    jvm.install_jars("kafka-image-thirdparty", tp_pom, WORK / "thirdparty")

    tmp = HOME.with_name(f".{HOME.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    kafka_home = tmp / "kafka"
    _extract_bin_config(kafka_home)
    (kafka_home / "libs").mkdir()
    kafka_jars = sorted((WORK / "kafka" / "lib").glob("*.jar"))
    for jar in kafka_jars:
        _link_or_copy(jar, kafka_home / "libs" / jar.name)
    kafka_classes = _classes(kafka_jars)
    changes = _fix_bin(kafka_home / "bin", kafka_classes)

    # Strimzi's scripts, with their modes (kafka_run.sh and the probes executable; the sourced ones not).
    (tmp / "scripts").mkdir()
    for rel, (data, mode) in strimzi_files.items():
        if rel.startswith(SCRIPTS):
            out = tmp / "scripts" / rel[len(SCRIPTS):]
            out.write_bytes(data)
            out.chmod(mode)
    (tmp / "agent").mkdir()
    shutil.copy2(agent, tmp / "agent" / f"kafka-agent-{STRIMZI_VERSION}.jar")

    # Third-party jars: a jar Kafka's libs hold under the same name (the same artifact and version)
    # is left out; Strimzi's image build copies it over Kafka's, the same file (4.3.x: jspecify-1.0.0).
    (tmp / "thirdparty-libs").mkdir()
    same = []
    for jar in sorted((WORK / "thirdparty" / "lib").glob("*.jar")):
        if (kafka_home / "libs" / jar.name).exists():
            same.append(jar.name)
        else:
            _link_or_copy(jar, tmp / "thirdparty-libs" / jar.name)
    _check_collisions(kafka_classes, sorted((tmp / "thirdparty-libs").glob("*.jar")) + [tmp / "agent" / agent.name])

    jvm.jlink(jdk, JAVA_MODULES, tmp / "jre", "Kafka image", LOG)
    third = sorted(p.name for p in (tmp / "thirdparty-libs").glob("*.jar"))
    summary = {"kafka": KAFKA_VERSION, "strimzi": STRIMZI_VERSION, "java": jdk_version,
               "kafka_jars": len(kafka_jars), "thirdparty_jars": len(third), "agent": agent.name,
               "libs_total": len(kafka_jars) + len(third) + 1, "thirdparty_same_as_kafka": same,
               "thirdparty_dropped": list(THIRD_PARTY_DROPPED), "bin_changes": changes, "java_modules": JAVA_MODULES}
    (tmp / "contents.json").write_text(json.dumps(summary, indent=1) + "\n")
    shutil.rmtree(HOME, ignore_errors=True)
    os.rename(tmp, HOME)
    marker.write_text(key + "\n")
    console.detail(f"Kafka image context: {summary['libs_total']} jars in libs/ ({len(kafka_jars)} Kafka, "
                   f"{len(third)} third-party, the agent), bin/ changes: {len(changes)}; {_du(HOME)} "
                   f"in {time.monotonic() - t0:.0f}s")
    return HOME


def _du(path: Path) -> str:
    out = subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True)
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout else "?"


# ---------------------------------------------------------------- image
def docker_image(agent: Path | None = None) -> str:
    """Build the image in this checkout's dockerd only (no node); returns its tag there."""
    images.build_image(f"{REPOSITORY}:dev", context=build_context(agent), dockerfile=DOCKERFILE,
                       base_arg="BASE_IMAGE", build_args=BUILD_ARGS)
    return f"{REPOSITORY}:dev"


def image() -> str:
    """Build the image into the node's containerd; returns its pinned reference,
    `simplecqrs-kafka:dev-<image id, 12>-kafka-4.3.1` (also tagged without the suffix, as
    images.build_into_node does).  A changed image gets a new reference, so the brokers roll."""

    ref = images.build_into_node(REPOSITORY, context=build_context(), dockerfile=DOCKERFILE, base_arg="BASE_IMAGE",
                                 build_args=BUILD_ARGS)
    kafka_ref = f"{ref}{TAG_SUFFIX}"
    if not containerd.image_present(kafka_ref):
        containerd.tag_image(ref, kafka_ref)
    return kafka_ref


def split(ref: str) -> tuple[str, str]:
    """An image() reference -> (name, tagPrefix), so that Strimzi's chart makes it back:
    `<name>:<tagPrefix>-kafka-4.3.1` (with an empty registry and repository, the chart puts its
    defaultImageRegistry/defaultImageRepository in front: docker.io/library, where containerd
    holds images imported without one)."""
    name, _, tag = ref.rpartition(":")
    if not name or not tag.endswith(TAG_SUFFIX):
        raise ValueError(f"not a Kafka {KAFKA_VERSION} image reference: {ref}")
    return name, tag.removesuffix(TAG_SUFFIX)


def chart_image(ref: str) -> dict:
    """Strimzi's Helm chart value `kafka.image` for an image() reference."""
    name, prefix = split(ref)
    return {"registry": "", "repository": "", "name": name, "tagPrefix": prefix}


# ---------------------------------------------------------------- CLI
@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
               help=(__doc__.split("\n\n")[0] + "\n\n"
                     "image (default): build into the node and print the reference; context: only the build context"))
@click.argument("what", type=click.Choice(["image", "context"]), default="image", required=False)
def command(what: str) -> None:
    paths.ensure_dirs()
    t0 = time.monotonic()
    if what == "context":
        print(build_context())
    else:
        ref = image()
        size = images.docker("image", "inspect", "-f", "{{.Size}}", f"{REPOSITORY}:dev").stdout.strip()
        console.detail(f"{ref}: {int(size) / 2**20:.0f} MiB, {time.monotonic() - t0:.0f}s")
        print(ref)


def main(argv: list[str] | None = None) -> int:
    """`python -m scripts.stack.kafkaimage`: 0, 1 with one line for a StackError, 2 for a usage error, 130
    when interrupted."""
    return run_click(command, argv, "python -m scripts.stack.kafkaimage")


if __name__ == "__main__":
    sys.exit(main())
