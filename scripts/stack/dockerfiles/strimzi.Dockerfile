# Strimzi's Topic Operator and User Operator (1.2.0) in one image, for the local node
# (scripts/stack/strimzi.py; its Deployments are scripts/stack/strimzi/*.yaml).  The build
# context is what strimzi.build() leaves in ~/.cache/simplecqrs/strimzi-1.2.0: operators/, each
# operator's jar and lib/ (Maven's dependency copy), and jre/, a Java runtime made with jlink.
# Upstream's quay.io/strimzi/operator image runs the same jars, through its launch scripts.
#
# BASE_IMAGE: the Debian root the stack makes (images.py); anything with useradd.
# JAVA_BASE: where `java` comes from.  Default: BASE_IMAGE plus the jlink'ed jre/ (the stage below).
# Elsewhere, e.g. --build-arg JAVA_BASE=eclipse-temurin:21-jre (then the context needs no jre/).
ARG BASE_IMAGE=debian:bookworm-slim
ARG JAVA_BASE=jlinked

FROM ${BASE_IMAGE} AS jlinked
COPY jre/ /opt/java/openjdk/
# Where the eclipse-temurin images have it.
ENV JAVA_HOME=/opt/java/openjdk \
    PATH=/opt/java/openjdk/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

FROM ${JAVA_BASE}
# As Strimzi's images: user strimzi, uid 1001, group 0.  The jars belong to root (read-only to it).
RUN useradd --system --uid 1001 --gid 0 --home-dir /opt/strimzi --no-create-home --shell /usr/sbin/nologin strimzi
# operators/: topic-operator/ and user-operator/, each its jar and lib/; one COPY, so that the jars
# the two share (hard links in the context) are stored once.
COPY operators/ /opt/strimzi/
# glibc's per-thread malloc arenas inflate a JVM's resident memory (upstream's launch_java.sh sets 2).
ENV MALLOC_ARENA_MAX=2
WORKDIR /opt/strimzi
USER 1001
# The operator is chosen by the arguments (the Deployments give heap flags, -cp and the main class):
#   -cp '/opt/strimzi/topic-operator/topic-operator-1.2.0.jar:/opt/strimzi/topic-operator/lib/*' io.strimzi.operator.topic.Main
#   -cp '/opt/strimzi/user-operator/user-operator-1.2.0.jar:/opt/strimzi/user-operator/lib/*' io.strimzi.operator.user.Main
# As launch_java.sh: exit on OutOfMemoryError (the kubelet restarts the container).  No hsperfdata
# file in /tmp (PerfDisableSharedMem): the root filesystem is read-only, /tmp a small emptyDir.
ENTRYPOINT ["java", "-XX:+ExitOnOutOfMemoryError", "-XX:+PerfDisableSharedMem"]
