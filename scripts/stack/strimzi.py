"""Strimzi's Topic Operator and User Operator (1.2.0) on the local node, for the local Kafka.

What a Strimzi `Kafka` cluster's Entity Operator runs, without the Cluster Operator: the broker is
not Strimzi's (kafka.py: a host process), so only the two operators run, as Deployments in the
namespace `kafka` for the cluster name `local`:
- the Topic Operator turns KafkaTopics (label strimzi.io/cluster=local) into topics;
- the User Operator turns KafkaUsers (same label) into SCRAM-SHA-512 credentials and ACLs, and
  writes each user's Secret (`password`, `sasl.jaas.config`).  (TLS users work too: it signs their
  certificates with the clients CA made here, but no listener of the local broker takes them.)
Both talk to the broker's SCRAM listener (kafka.SCRAM_BOOTSTRAP) as its super user
kafka.scram_admin().

Built from source (Strimzi's jars are not on Maven Central): `build()`, the install step, extracts
the vendored source tarball (../shared/vendor/; elsewhere SIMPLECQRS_STRIMZI_SOURCE: a tarball or
a clone of github.com/strimzi/strimzi-kafka-operator at tag 1.2.0) into CACHE/build/strimzi-1.2.0,
runs Maven with a JDK 21+ (Temurin 25 here; SIMPLECQRS_STRIMZI_JDK), and keeps what the rest needs
in CACHE/strimzi-1.2.0: both operators' jars, the two CRDs the build generates, and a Java runtime
made with jlink (only the modules the jars use).  One image holds both operators
(dockerfiles/strimzi.Dockerfile, FROM the Debian base images.py makes); the manifests are
scripts/stack/strimzi/*.yaml.  Standard library only.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from . import core, images, kafka, node

VERSION = "1.2.0"
NAMESPACE = "kafka"                 # the Kafka cluster's namespace: KafkaTopics and KafkaUsers live here
CLUSTER = "local"                   # the cluster name: label strimzi.io/cluster=local selects what they manage
CLUSTER_LABEL = f"strimzi.io/cluster={CLUSTER}"
TOPIC_OPERATOR = "strimzi-topic-operator"
USER_OPERATOR = "strimzi-user-operator"
ADMIN_SECRET = f"{CLUSTER}-kafka-admin"          # the operators' SCRAM credential (kafka.scram_admin())
CA_CERT_SECRET = f"{CLUSTER}-clients-ca-cert"    # Strimzi's names for a cluster's clients CA
CA_KEY_SECRET = f"{CLUSTER}-clients-ca"
REPOSITORY = "simplecqrs-strimzi"
FIELD_MANAGER = "simplecqrs-stack"
INPUTS_ANNOTATION = "simplecqrs.io/stack-inputs"  # on the Deployments: what they were applied from

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "strimzi"
DOCKERFILE = HERE / "dockerfiles" / "strimzi.Dockerfile"
SOURCE = Path(os.environ.get("SIMPLECQRS_STRIMZI_SOURCE")
              or core.ROOT.parent / "shared" / "vendor" / f"strimzi-kafka-operator-{VERSION}-src.tar.gz")
JDK = Path(os.environ.get("SIMPLECQRS_STRIMZI_JDK", "/usr/lib/jvm/temurin-25-jdk-amd64"))
BUILD = core.CACHE / "build" / f"strimzi-{VERSION}"   # the extracted source and Maven's target/ dirs
HOME = core.CACHE / f"strimzi-{VERSION}"              # the build's results (the image's build context)
CA_DIR = core.ETC / "strimzi"                          # the clients CA, once per checkout
OPERATORS = ("topic-operator", "user-operator")  # Maven modules; main classes io.strimzi.operator.{topic,user}.Main
CRDS = {"043-Crd-kafkatopic.yaml": "kafkatopics.kafka.strimzi.io", "044-Crd-kafkauser.yaml": "kafkausers.kafka.strimzi.io"}

# Only the two operators and what they depend on (-am); no tests, no static analysis.
#  - maven-compiler-plugin 3.13.0 instead of the pom's 3.10.1: JDK 23+ runs annotation processors
#    (the api module's Lombok and Sundrio builders) only when told, and only 3.12+ has a user
#    property for that (maven.compiler.proc), so the pom is not edited;
#  - Lombok 1.18.42: 1.18.32 fails on JDK 25;
#  - strimzi-test-container 0.115.0: the pom's 0.116.0 is not on Maven Central (test scope, but
#    Maven resolves it all the same).
MAVEN_ARGS = ["-B", "--no-transfer-progress", "-pl", "topic-operator,user-operator", "-am",
              "-DskipTests", "-Dspotbugs.skip", "-Dcheckstyle.skip", "-Dmaven.javadoc.skip",
              "-Dmaven.compiler.version=3.13.0", "-Dmaven.compiler.proc=full", "-Dlombok.version=1.18.42",
              "-Dstrimzi-test-container.version=0.115.0", "package"]
# Added to what jdeps finds in the jars: jdk.crypto.ec holds the EC algorithms (TLS to the
# apiserver) on a JDK 21 (on 22+ they moved into java.base and it is empty).
EXTRA_MODULES = ("jdk.crypto.ec",)
# --generate-cds-archive: the runtime's own class-data archive (faster JVM start, shared pages);
# its no-compressed-oops twin only serves heaps over 32 GB (removed).  zip-6: 124 -> 78 MB.
JLINK_ARGS = ["--strip-debug", "--no-man-pages", "--no-header-files", "--compress", "zip-6", "--generate-cds-archive"]
FIRST_BUILD_SECONDS = 75           # measured here with an empty ~/.m2 (70 s; shown beside the elapsed time)


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
        raise core.StackError("strimzi", f"no Strimzi source at {SOURCE} (SIMPLECQRS_STRIMZI_SOURCE: "
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
        raise core.StackError("strimzi", f"building Strimzi {VERSION} needs a JDK 21 or newer at {JDK} (found: "
                                         f"{version}); set SIMPLECQRS_STRIMZI_JDK to one (e.g. Eclipse Temurin 21+)")
    return version


def build_key() -> str:
    """What HOME is made from: the source, the Maven arguments, the JDK (the jlink'ed runtime)."""
    inputs = [_source_key(), MAVEN_ARGS, _jdk_version(), EXTRA_MODULES, JLINK_ARGS]
    return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()


def built() -> bool:
    marker = HOME / ".installed"
    return marker.exists() and marker.read_text().strip() == build_key()


def build() -> Path:
    """Build both operators and their runtime into HOME unless it is up to date; returns HOME."""
    key = build_key()
    if built():
        return HOME
    if not core.which("mvn"):
        core.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven",
                 "Strimzi apt-get install maven", shell=True)
    log = core.LOGS / "install-strimzi.log"
    # The source, extracted (or copied) afresh when it changed; Maven's target/ dirs stay between runs.
    src_key = _source_key()
    if not (BUILD / ".source").exists() or (BUILD / ".source").read_text() != src_key:
        shutil.rmtree(BUILD, ignore_errors=True)
        BUILD.mkdir(parents=True)
        core.say(f"Strimzi {VERSION}: source from {SOURCE} into {BUILD}")
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
        raise core.StackError("strimzi", f"{SOURCE} is Strimzi {release}, not {VERSION}")
    # The CRDs are generated by the build (the api module writes them there): remove the copies
    # the source ships, so that what is used is what this build generated.
    crd_dir = BUILD / "packaging" / "install" / "cluster-operator"
    for name in CRDS:
        (crd_dir / name).unlink(missing_ok=True)
    env = dict(os.environ, JAVA_HOME=str(JDK), PATH=f"{JDK / 'bin'}:{os.environ.get('PATH', '')}")
    timing = core.CACHE / "build" / f"strimzi-{VERSION}.seconds"
    try:
        expected = float(timing.read_text())
    except (OSError, ValueError):
        expected = FIRST_BUILD_SECONDS
    core.say(f"Strimzi {VERSION}: building the topic and user operators with Maven and {JDK.name} "
             "(a few minutes; more the first time, while ~/.m2 fills)")
    took = core.run(["mvn", *MAVEN_ARGS], f"Strimzi {VERSION} Maven build", cwd=BUILD, env=env, log=log,
                    expected=expected)
    timing.write_text(f"{took:.0f}\n")

    # The results, assembled beside HOME and renamed into place (never a half-made HOME).
    tmp = HOME.with_name(f".{HOME.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for op in OPERATORS:
        target = BUILD / op / "target"
        (tmp / "operators" / op).mkdir(parents=True)
        shutil.copy2(target / f"{op}-{VERSION}.jar", tmp / "operators" / op)
        shutil.copytree(target / "lib", tmp / "operators" / op / "lib")
    _link_duplicates(tmp / "operators" / "user-operator" / "lib", tmp / "operators" / "topic-operator" / "lib")
    (tmp / "crds").mkdir()
    for name in CRDS:
        if not (crd_dir / name).exists():
            raise core.StackError("strimzi", f"the build generated no {crd_dir / name}", log)
        shutil.copy2(crd_dir / name, tmp / "crds" / name)
    _jlink(tmp, log)
    shutil.rmtree(HOME, ignore_errors=True)
    os.rename(tmp, HOME)
    (HOME / ".installed").write_text(key + "\n")
    core.detail(f"Strimzi {VERSION} in {HOME} ({_du(HOME)})")
    return HOME


def _link_duplicates(lib: Path, reference: Path) -> None:
    """Hard-link `lib`'s jars that are identical to `reference`'s (the two operators share all but
    one): half the size on disk and in the image (one COPY, one layer: it keeps hard links)."""
    for jar in lib.iterdir():
        other = reference / jar.name
        if other.is_file() and other.stat().st_size == jar.stat().st_size \
                and other.read_bytes() == jar.read_bytes():
            jar.unlink()
            os.link(other, jar)


def _jlink(home: Path, log: Path) -> None:
    """home/jre: a Java runtime with only the modules the operators' jars use (jdeps), from the JDK
    that built them; the image then needs no JDK package."""
    jars = sorted(str(p) for p in home.glob("operators/*/*.jar")) + sorted(str(p) for p in home.glob("operators/*/lib/*"))
    feature = _jdk_version().split(".")[0]
    out = subprocess.run([str(JDK / "bin" / "jdeps"), "--print-module-deps", "--ignore-missing-deps", "-q",
                          "--multi-release", feature, *jars], capture_output=True, text=True)
    modules = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
    if not re.fullmatch(r"[\w.]+(,[\w.]+)*", modules):
        raise core.StackError("strimzi", f"jdeps found no module list: {(out.stderr or out.stdout).strip()[-300:]}")
    modules = ",".join(sorted(set(modules.split(",")) | set(EXTRA_MODULES)))
    core.run([str(JDK / "bin" / "jlink"), "--add-modules", modules, *JLINK_ARGS, "--output", str(home / "jre")],
             f"Strimzi {VERSION} jlink runtime ({modules})", log=log)
    (home / "jre" / "lib" / "server" / "classes_nocoops.jsa").unlink(missing_ok=True)
    (home / "jre" / "modules.txt").write_text(modules + "\n")


def _du(path: Path) -> str:
    out = subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True)
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout else "?"


# ---------------------------------------------------------------- image, CA, manifests
def image() -> str:
    """Build the image (both operators) into the node's containerd; returns its pinned reference."""
    build()
    return images.build_into_node(REPOSITORY, context=HOME, dockerfile=DOCKERFILE, base_arg="BASE_IMAGE")


def ensure_ca() -> tuple[bytes, bytes]:
    """The clients CA the User Operator signs TLS users' certificates with (it insists on one even
    for SCRAM-only users): self-signed, made once per checkout.  Returns (ca.crt, ca.key) PEM."""
    crt, key = CA_DIR / "clients-ca.crt", CA_DIR / "clients-ca.key"
    if not (crt.exists() and key.exists()):
        CA_DIR.mkdir(parents=True, exist_ok=True)
        tmp_key = key.with_suffix(".tmp")
        fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # 0600 before any byte is written
        os.close(fd)
        # As Strimzi's clients CA: O=io.strimzi, CN=clients-ca v0 ("v<generation>"), a CA for signing only.
        out = subprocess.run(
            ["openssl", "req", "-x509", "-new", "-nodes", "-newkey", "rsa:4096", "-sha256", "-days", "3650",
             "-subj", "/O=io.strimzi/CN=clients-ca v0", "-keyout", str(tmp_key), "-out", str(crt),
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"], capture_output=True, text=True)
        if out.returncode != 0:
            raise core.StackError("strimzi", f"openssl (clients CA): {out.stderr.strip()[-300:]}")
        os.replace(tmp_key, key)
    return crt.read_bytes(), key.read_bytes()


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def secrets_manifest() -> list[dict]:
    """The namespace, the admin's SCRAM credential and the clients CA (built here, not templated:
    secrets go to kubectl on stdin, never into a rendered file)."""
    user, password = kafka.scram_admin()
    crt, key = ensure_ca()
    labels = {"app.kubernetes.io/managed-by": FIELD_MANAGER, "app.kubernetes.io/part-of": "strimzi"}
    ca_labels = {**labels, "strimzi.io/cluster": CLUSTER, "strimzi.io/kind": "Kafka"}
    ca_annotations = {"strimzi.io/ca-cert-generation": "0", "strimzi.io/ca-key-generation": "0"}
    # jaas.conf: the User Operator's Kafka client reads its login from a JAAS file (-Djava.security.
    # auth.login.config), because that operator logs its admin-client configuration in full at start.
    jaas = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{password}";'
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}},
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": ADMIN_SECRET, "namespace": NAMESPACE, "labels": labels},
         "data": {"username": _b64(user), "password": _b64(password), "sasl.jaas.config": _b64(jaas),
                  "jaas.conf": _b64(f"KafkaClient {{\n  {jaas}\n}};\n")}},
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": CA_CERT_SECRET, "namespace": NAMESPACE, "labels": ca_labels,
                      "annotations": ca_annotations}, "data": {"ca.crt": _b64(crt)}},
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": CA_KEY_SECRET, "namespace": NAMESPACE, "labels": ca_labels,
                      "annotations": ca_annotations}, "data": {"ca.key": _b64(key)}},
    ]


def _inputs_digest() -> str:
    """Everything the applied objects are made from, secrets included: changed -> apply again."""
    h = hashlib.sha256(build_key().encode())
    h.update(json.dumps(secrets_manifest(), sort_keys=True).encode())
    for f in [DOCKERFILE, *sorted(TEMPLATES.glob("*.yaml"))]:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def render(template: str, image_ref: str) -> str:
    values = {"NAMESPACE": NAMESPACE, "CLUSTER_LABEL": CLUSTER_LABEL, "IMAGE": image_ref, "VERSION": VERSION,
              "BOOTSTRAP": kafka.SCRAM_BOOTSTRAP, "ADMIN_SECRET": ADMIN_SECRET,
              "CA_CERT_SECRET": CA_CERT_SECRET, "CA_KEY_SECRET": CA_KEY_SECRET, "INPUTS": _inputs_digest(),
              "INPUTS_ANNOTATION": INPUTS_ANNOTATION}
    text = (TEMPLATES / template).read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    if left := re.findall(r"@[A-Z_]+@", text):
        raise core.StackError("strimzi", f"{template}: no value for {sorted(set(left))}")
    return text


def _apply(text: str) -> None:
    node.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts", "-f", "-",
                 input=text)


def _deployment(name: str) -> dict:
    out = node.kubectl("-n", NAMESPACE, "get", "deployment", name, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _available(name: str) -> bool:
    """Rolled out: the current spec's pods are all there and Available."""
    d = _deployment(name)
    st, want = d.get("status", {}), d.get("spec", {}).get("replicas", 1)
    conditions = {c["type"]: c["status"] for c in st.get("conditions", [])}
    return (conditions.get("Available") == "True" and st.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and st.get("updatedReplicas", 0) == want and st.get("availableReplicas", 0) == want
            and st.get("replicas", 0) == want)


# ---------------------------------------------------------------- component
class Strimzi(core.Component):
    """The CRDs, the secrets and both operators' Deployments (their pods: the kubelet runs them)."""

    name = "strimzi"
    address = f"ns {NAMESPACE}, cluster {CLUSTER} -> {kafka.SCRAM_BOOTSTRAP}"
    start_timeout = 180
    process = False
    requires = ("kafka", "kube-proxy", "dockerd")

    def install(self) -> None:
        build()

    def running(self) -> bool:
        return node.Kubelet().running() and bool(_deployment(TOPIC_OPERATOR))

    def up(self) -> None:
        # As core.Component.up(), except that Deployments applied from other inputs (a new build,
        # changed templates) or whose image the node lacks are applied again.
        if kafka.Kafka().running():
            kafka.ensure_scram_admin()      # two requests: puts back the admin if something removed it
        if self.running():
            d = _deployment(TOPIC_OPERATOR)
            applied = d.get("metadata", {}).get("annotations", {}).get(INPUTS_ANNOTATION)
            image_ref = d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0].get("image")
            if applied == _inputs_digest() and image_ref and node.image_present(image_ref):
                if self._ready_quietly():
                    core.detail(f"{self.name} answering on {self.address}")
                else:
                    self.wait_ready()       # e.g. its pods starting again with the node
                return
            core.say(f"updating {self.name}")
        else:
            core.say(f"starting {self.name}")
        self.start()
        self.wait_ready()

    def start(self) -> None:
        kafka.ensure_scram_admin()          # the operators' credential, before they use it
        ref = image()
        t0 = time.monotonic()
        # The CRDs first (server-side: they are too big for client-side apply's annotation).
        _apply("\n---\n".join((HOME / "crds" / name).read_text() for name in CRDS))
        node.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     *(f"crd/{crd}" for crd in CRDS.values()))
        _apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": secrets_manifest()}))
        for template in ("topic-operator.yaml", "user-operator.yaml"):
            _apply(render(template, ref))
        core.detail(f"strimzi: CRDs, secrets and operators applied in {time.monotonic() - t0:.1f}s ({ref})")

    def ready(self) -> bool:
        return _available(TOPIC_OPERATOR) and _available(USER_OPERATOR)

    def stop(self) -> None:
        """Nothing of its own: its pods stop with the node; its objects stay in the apiserver."""

    def version(self) -> str:
        return VERSION

    def status(self) -> core.Status:
        s = super().status()
        s.log = f"kubectl -n {NAMESPACE} logs deploy/{TOPIC_OPERATOR} (or {USER_OPERATOR})"
        return s
