"""Strimzi 1.2.0's Cluster Operator on the local node, built from source and installed with its Helm chart.

The Cluster Operator runs the stack's Kafka cluster (kafka.py: the `Kafka` resource `local` in the
namespace `kafka`) and, through it, the Entity Operator (the Topic and User Operators) that turns
KafkaTopics and KafkaUsers into topics, SCRAM-SHA-512 credentials and ACLs.

Built from source (Strimzi's jars are not on Maven Central): `build()`, the install step, extracts
the vendored source tarball (../shared/vendor/; elsewhere SIMPLECQRS_STRIMZI_SOURCE: a tarball or
a clone of github.com/strimzi/strimzi-kafka-operator at tag 1.2.0) into CACHE/build/strimzi-1.2.0,
runs Maven with a JDK 21+ (Temurin 25 here; SIMPLECQRS_STRIMZI_JDK), and keeps what the rest needs
in CACHE/strimzi-1.2.0:
- operator/: the four operators' `-dist.zip`s unpacked (bin/ with Strimzi's launch scripts, lib/),
  the layout of Strimzi's own operator image (docker-images/operator), so the Cluster Operator, the
  Entity Operator's two containers and the Kafka pods' init container all run from one image
  (dockerfiles/strimzi.Dockerfile) exactly as they run from quay.io/strimzi/operator;
- kafka-agent/: the broker agent that Strimzi's Kafka image carries (kafkaimage.py adds it);
- crds/: every CRD the build generated; chart/: Strimzi's Helm chart from the same source;
- jre/: a Java runtime made with jlink (JAVA_MODULES), so the image needs no JDK package.
The CRDs are applied server-side from crds/ (Helm installs a chart's crds/ once and never upgrades
them), then `helm upgrade --install strimzi chart/ --skip-crds` with our image names (`install()`;
the stack's components, `Strimzi` and `Kafka`, are in kafka.py).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

from . import commands, console, errors, images, jvm, node, paths

VERSION = "1.2.0"
KAFKA_VERSION = "4.3.1"             # Strimzi 1.2.0's default (its kafka-versions.yaml): the one version built here
NAMESPACE = "kafka"                 # the Kafka cluster's namespace, where the Cluster Operator runs
RELEASE = "strimzi"                 # the Helm release of Strimzi's chart
DEPLOYMENT = "strimzi-cluster-operator"
OPERATOR_SELECTOR = "strimzi.io/kind=cluster-operator"
REPOSITORY = "simplecqrs-strimzi"   # the operator image (all four operators)
FIELD_MANAGER = "simplecqrs-stack"

VALUES = paths.ETC / "strimzi-values.json"      # what the release was installed with last
HERE = Path(__file__).resolve().parent
DOCKERFILE = HERE / "dockerfiles" / "strimzi.Dockerfile"
SOURCE = Path(os.environ.get("SIMPLECQRS_STRIMZI_SOURCE")
              or paths.ROOT.parent / "shared" / "vendor" / f"strimzi-kafka-operator-{VERSION}-src.tar.gz")
JDK = Path(os.environ.get("SIMPLECQRS_STRIMZI_JDK", "/usr/lib/jvm/temurin-25-jdk-amd64"))
BUILD = paths.CACHE / "build" / f"strimzi-{VERSION}"   # the extracted source and Maven's target/ dirs
HOME = paths.CACHE / f"strimzi-{VERSION}"              # the build's results (the image's build context)
OPERATORS = ("cluster-operator", "topic-operator", "user-operator", "kafka-init")   # Maven modules
AGENT_JAR = HOME / "kafka-agent" / f"kafka-agent-{VERSION}.jar"
CRD_DIR = Path("packaging") / "install" / "cluster-operator"    # where the api module writes the CRDs
CHART_DIR = Path("packaging") / "helm-charts" / "helm3" / "strimzi-kafka-operator"
# The CRDs a Topic/User Operator and a Kafka cluster need, by file, as the build names them.
CRDS = {"040-Crd-kafka.yaml": "kafkas.kafka.strimzi.io",
        "042-Crd-strimzipodset.yaml": "strimzipodsets.core.strimzi.io",
        "043-Crd-kafkatopic.yaml": "kafkatopics.kafka.strimzi.io",
        "044-Crd-kafkauser.yaml": "kafkausers.kafka.strimzi.io",
        "045-Crd-kafkanodepool.yaml": "kafkanodepools.kafka.strimzi.io",
        "041-Crd-kafkaconnect.yaml": "kafkaconnects.kafka.strimzi.io",
        "046-Crd-kafkabridge.yaml": "kafkabridges.kafka.strimzi.io",
        "047-Crd-kafkaconnector.yaml": "kafkaconnectors.kafka.strimzi.io",
        "048-Crd-kafkamirrormaker2.yaml": "kafkamirrormaker2s.kafka.strimzi.io",
        "049-Crd-kafkarebalance.yaml": "kafkarebalances.kafka.strimzi.io"}

# The operators, the broker agent and what they depend on (-am); no tests run, no static analysis.
#  - maven-compiler-plugin 3.13.0 instead of the pom's 3.10.1: JDK 23+ runs annotation processors
#    (the api module's Lombok and Sundrio builders) only when told, and only 3.12+ has a user
#    property for that (maven.compiler.proc), so the pom is not edited;
#  - Lombok 1.18.42: 1.18.32 fails on JDK 25;
#  - strimzi-test-container 0.115.0: the pom's 0.116.0 is not on Maven Central (test scope, but
#    Maven resolves it all the same);
#  - the fabric8 Kubernetes client 7.7.0 instead of 7.8.0: the Cluster Operator also depends on
#    openshift-client, and its 7.8.0 modules (openshift-client-api, openshift-model...) are not on
#    Maven Central (404); 7.7.0's are.  All fabric8 modules move together, for every operator.
FABRIC8 = "7.7.0"
MAVEN_ARGS = ["-B", "--no-transfer-progress", "-pl", ",".join((*OPERATORS, "kafka-agent")), "-am",
              "-DskipTests", "-Dspotbugs.skip", "-Dcheckstyle.skip", "-Dmaven.javadoc.skip",
              "-Dmaven.compiler.version=3.13.0", "-Dmaven.compiler.proc=full", "-Dlombok.version=1.18.42",
              "-Dstrimzi-test-container.version=0.115.0",
              *(f"-Dfabric8.{p}.version={FABRIC8}" for p in ("kubernetes-client", "openshift-client",
                                                              "kubernetes-model", "zjsonpatch")),
              "package"]
# The Cluster Operator's tests are not compiled: they need a test connector no version of which is
# on Maven Central (fault-injection-source-connector) and classes the served strimzi-test-container
# does not make public.  So its src/test is removed from the extracted tree and that test-scope
# dependency from its pom (Maven resolves test scope even when tests are skipped).  The only edits
# to Strimzi's source; other modules' tests compile (topic-operator needs operator-common's test jar).
UNSERVED_TEST_DEPENDENCIES = {"cluster-operator/pom.xml": "fault-injection-source-connector"}
UNBUILT_TEST_SOURCES = ("cluster-operator/src/test",)
# The Cluster Operator validates each Kafka version's broker configuration against a model that
# config-model-generator makes from that version's jars (Strimzi's build runs it for every supported
# version before packaging the operator).  Here: the one version an image is built for.
CONFIG_MODEL_GOALS = ["-B", "--no-transfer-progress", "-f", "config-model-generator/pom.xml",
                      "-P", "generate-model,!generate-all-models", "verify", "exec:java"]
# The Java modules of the runtime the operators run on: java.se and the JDK modules their libraries
# reach for (Netty and fabric8: jdk.unsupported, jdk.net, jdk.naming.dns; TLS: jdk.crypto.ec,
# jdk.crypto.cryptoki; metrics: jdk.management, jdk.jfr).  A fixed list: jdeps stops at modular jars
# whose optional modules are absent (io.vertx.metrics.micrometer -> io.vertx.web).
JAVA_MODULES = ("java.se", "jdk.crypto.cryptoki", "jdk.crypto.ec", "jdk.httpserver", "jdk.jfr", "jdk.management",
                "jdk.naming.dns", "jdk.net", "jdk.security.auth", "jdk.security.jgss", "jdk.unsupported", "jdk.zipfs")
FIRST_BUILD_SECONDS = 180          # measured with an empty ~/.m2 (in parts, 2026-12-05); replaced by the last time


# ---------------------------------------------------------------- build (install step)
@functools.cache
def _source_key() -> str:
    """The source's identity: a tarball's sha256, or a tree's file names, sizes and times."""
    if SOURCE.is_file():
        h = hashlib.sha256()
        with open(SOURCE, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    if not (SOURCE / "pom.xml").is_file():
        raise errors.StackError("strimzi", f"no Strimzi source at {SOURCE} (SIMPLECQRS_STRIMZI_SOURCE: "
                                           f"the {VERSION} source tarball, or a clone at tag {VERSION})")
    h = hashlib.sha256(str(SOURCE.resolve()).encode())
    for root, dirs, files in os.walk(SOURCE):
        dirs[:] = sorted(d for d in dirs if d not in (".git", "target"))
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            h.update(f"{os.path.relpath(root, SOURCE)}/{name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _jdk_version() -> str:
    """The JDK's JAVA_VERSION, e.g. 25.0.3 (it must be 21 or newer: Strimzi 1.x targets Java 21)."""
    try:
        version = re.search(r'^JAVA_VERSION="([^"]+)"', (JDK / "release").read_text(), re.M).group(1)
    except (OSError, AttributeError):
        version = "none"
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 21:
        raise errors.StackError("strimzi", f"building Strimzi {VERSION} needs a JDK 21 or newer at {JDK} (found: "
                                           f"{version}); set SIMPLECQRS_STRIMZI_JDK to one (e.g. Eclipse Temurin 21+)")
    return version


def build_key() -> str:
    """What HOME is made from: the source, the Maven arguments, the JDK (the jlink'ed runtime)."""
    inputs = [_source_key(), MAVEN_ARGS, CONFIG_MODEL_GOALS, KAFKA_VERSION, _jdk_version(), JAVA_MODULES,
              jvm.JLINK_ARGS, OPERATORS, sorted(CRDS),
              UNSERVED_TEST_DEPENDENCIES, UNBUILT_TEST_SOURCES]
    return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()


def built() -> bool:
    marker = HOME / ".installed"
    return marker.exists() and marker.read_text().strip() == build_key()


def source_tree() -> Path:
    """The extracted source (extracted or copied afresh when it changed; Maven's target/ dirs stay)."""
    src_key = _source_key()
    if not (BUILD / ".source").exists() or (BUILD / ".source").read_text() != src_key:
        shutil.rmtree(BUILD, ignore_errors=True)
        BUILD.mkdir(parents=True)
        console.say(f"Strimzi {VERSION}: source from {SOURCE} into {BUILD}")
        if SOURCE.is_file():
            # `git archive` (the vendored one) has the tree at the top; GitHub's source archives
            # have it under strimzi-kafka-operator-<tag>/.
            with tarfile.open(SOURCE) as tar:
                names = {n.removeprefix("./") for n in tar.getnames()}
            strip = [] if "pom.xml" in names else ["--strip-components=1"]
            subprocess.run(["tar", "-xzf", str(SOURCE), "-C", str(BUILD), *strip], check=True)
        else:
            shutil.copytree(SOURCE, BUILD, dirs_exist_ok=True, symlinks=True,
                            ignore=shutil.ignore_patterns(".git", "target"))
        (BUILD / ".source").write_text(src_key)
    release = (BUILD / "release.version").read_text().strip() if (BUILD / "release.version").exists() else "?"
    if release != VERSION:
        raise errors.StackError("strimzi", f"{SOURCE} is Strimzi {release}, not {VERSION}")
    for pom, artifact in UNSERVED_TEST_DEPENDENCIES.items():
        text = (BUILD / pom).read_text()
        dropped = re.sub(rf"\s*<dependency>\s*<groupId>[^<]+</groupId>\s*<artifactId>{artifact}</artifactId>"
                         r"\s*<scope>test</scope>\s*</dependency>", "", text)
        if dropped != text:
            (BUILD / pom).write_text(dropped)
    for tests in UNBUILT_TEST_SOURCES:
        shutil.rmtree(BUILD / tests, ignore_errors=True)
    return BUILD


def build() -> Path:
    """Build the operators, the agent and their runtime into HOME unless it is up to date; returns HOME."""
    key = build_key()
    if built():
        return HOME
    if not paths.which("mvn"):
        commands.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven",
                     "Strimzi apt-get install maven", shell=True)
    log = paths.LOGS / "install-strimzi.log"
    src = source_tree()
    # The CRDs are generated by the build (the api module writes them there): remove the copies
    # the source ships, so that what is used is what this build generated.
    for name in CRDS:
        (src / CRD_DIR / name).unlink(missing_ok=True)
    env = dict(os.environ, JAVA_HOME=str(JDK), PATH=f"{JDK / 'bin'}:{os.environ.get('PATH', '')}")
    timing = paths.CACHE / "build" / f"strimzi-{VERSION}.seconds"
    try:
        expected = float(timing.read_text())
    except (OSError, ValueError):
        expected = FIRST_BUILD_SECONDS
    console.say(f"Strimzi {VERSION}: building the cluster, topic and user operators, kafka-init and the Kafka "
                f"agent with Maven and {JDK.name} (minutes; more the first time, while ~/.m2 fills)")
    t0 = time.monotonic()
    # The configuration model first: it lands in the Cluster Operator's resources.  The generator
    # runs on its own pom, so the modules it depends on go to ~/.m2 first.
    flags = [a for a in MAVEN_ARGS if a.startswith("-D")]
    commands.run(["mvn", "-B", "--no-transfer-progress", "-pl", "config-model", "-am", *flags, "install"],
                 f"Strimzi {VERSION} config-model install", cwd=src, env=env, log=log)
    model = src / "cluster-operator" / "src" / "main" / "resources" / f"kafka-{KAFKA_VERSION}-config-model.json"
    commands.run(["mvn", *CONFIG_MODEL_GOALS, *flags, f"-Dkafka-metadata-version={KAFKA_VERSION}",
                  f"-Dconfig-model-file={model}"],
                 f"Strimzi {VERSION} Kafka {KAFKA_VERSION} configuration model", cwd=src, env=env, log=log)
    commands.run(["mvn", *MAVEN_ARGS], f"Strimzi {VERSION} Maven build", cwd=src, env=env, log=log,
                 expected=expected)
    timing.write_text(f"{time.monotonic() - t0:.0f}\n")

    # The results, assembled beside HOME and renamed into place (never a half-made HOME).
    tmp = HOME.with_name(f".{HOME.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    operator = tmp / "operator"
    for module in OPERATORS:
        # As docker-images/operator/Makefile: every dist zip unpacked into one tree (bin/ holds each
        # operator's launch script, lib/ the union of their jars, named groupId.artifactId-version).
        with zipfile.ZipFile(src / "docker-images" / "artifacts" / "binaries" / f"{module}-{VERSION}-dist.zip") as z:
            z.extractall(operator)
    shutil.copy2(src / "docker-images" / "operator" / "scripts" / "launch_java.sh", operator / "bin")
    for script in (operator / "bin").iterdir():
        script.chmod(0o755)
    (tmp / "kafka-agent").mkdir()
    shutil.copy2(src / "kafka-agent" / "target" / f"kafka-agent-{VERSION}.jar", tmp / "kafka-agent")
    (tmp / "crds").mkdir()
    for name in CRDS:
        if not (src / CRD_DIR / name).exists():
            raise errors.StackError("strimzi", f"the build generated no {src / CRD_DIR / name}", log)
        shutil.copy2(src / CRD_DIR / name, tmp / "crds" / name)
    shutil.copytree(src / CHART_DIR, tmp / "chart", ignore=shutil.ignore_patterns("crds"))
    jvm.jlink(JDK, JAVA_MODULES, tmp / "jre", f"Strimzi {VERSION}", log)
    shutil.rmtree(HOME, ignore_errors=True)
    os.rename(tmp, HOME)
    (HOME / ".installed").write_text(key + "\n")
    console.detail(f"Strimzi {VERSION} in {HOME} ({_du(HOME)})")
    return HOME


def _du(path: Path) -> str:
    out = subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True)
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout else "?"


# ---------------------------------------------------------------- image and chart values
def image() -> str:
    """Build the operator image into the node's containerd; returns its pinned reference."""
    build()
    return images.build_into_node(REPOSITORY, context=HOME, dockerfile=DOCKERFILE, base_arg="BASE_IMAGE")


def _split(ref: str) -> tuple[str, str]:
    """`name:tag` of an image imported into the node -> (name, tag); the node holds it as
    docker.io/library/<name>:<tag>, which is what the chart's registry/repository/name/tag make."""
    name, _, tag = ref.rpartition(":")
    return name, tag


def chart_values(operator_ref: str, kafka_name: str, kafka_prefix: str) -> dict:
    """Strimzi's chart values that point every image at ours.

    The Cluster Operator names a Kafka image `<registry>/<repository>/<name>:<tagPrefix>-kafka-<version>`
    (its STRIMZI_KAFKA_IMAGES map, made by the chart for each supported version): kafkaimage.py tags
    ours that way for the one version built here and gives (name, tagPrefix)."""
    op_name, op_tag = _split(operator_ref)
    operator_image = {"registry": "", "repository": "", "name": op_name, "tag": op_tag}
    return {
        "defaultImageRegistry": "docker.io", "defaultImageRepository": "library", "defaultImageTag": op_tag,
        # IfNotPresent: our images are in the node's containerd and nowhere else; the operator passes it on.
        "image": {**operator_image, "imagePullPolicy": "IfNotPresent"},
        "topicOperator": {"image": operator_image}, "userOperator": {"image": operator_image},
        "kafkaInit": {"image": operator_image},
        "kafka": {"image": {"registry": "", "repository": "", "name": kafka_name, "tagPrefix": kafka_prefix}},
        # Every namespace: the stack's cluster lives in `kafka`, and the chart's development Kafka
        # (values-dev.yaml, kafka.deploy.enabled) in its release's namespace, as kind users install
        # it.  Creating a `Kafka` takes rights on kafka.strimzi.io that no OrderService tenant has.
        "watchNamespaces": [], "watchAnyNamespace": True,
        # Its pods as the Restricted Pod Security Standard asks (non-root, no privilege escalation, no
        # capabilities, RuntimeDefault seccomp), as the chart already makes the operator's own.
        "extraEnvs": [{"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": "restricted"}],
    }


# ---------------------------------------------------------------- the operator in the cluster
def _apply(text: str) -> None:
    node.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts", "-f", "-",
                 input=text)


def deployment() -> dict:
    out = node.kubectl("-n", NAMESPACE, "get", "deployment", DEPLOYMENT, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def available() -> bool:
    """Rolled out: the current spec's pod is there and Available."""
    d = deployment()
    if not d:
        return False
    st, want = d.get("status", {}), d.get("spec", {}).get("replicas", 1)
    conditions = {c["type"]: c["status"] for c in st.get("conditions", [])}
    return (conditions.get("Available") == "True" and st.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and st.get("updatedReplicas", 0) == want and st.get("availableReplicas", 0) == want
            and st.get("replicas", 0) == want)


def install(values: dict) -> None:
    """The CRDs (server-side: too big for client-side apply's annotation), then Strimzi's chart."""
    _apply("\n---\n".join((HOME / "crds" / name).read_text() for name in CRDS))
    node.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{crd}" for crd in CRDS.values()))
    VALUES.parent.mkdir(parents=True, exist_ok=True)
    VALUES.write_text(json.dumps(values, indent=1))
    node.helm("upgrade", "--install", RELEASE, str(HOME / "chart"), "-n", NAMESPACE, "--create-namespace",
              "--skip-crds", "-f", str(VALUES))


def installed_with(values: dict) -> bool:
    return VALUES.exists() and json.loads(VALUES.read_text()) == values
