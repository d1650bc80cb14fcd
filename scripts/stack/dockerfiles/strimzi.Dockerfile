# Strimzi 1.2.0's operator image, built here for the local node (scripts/stack/strimzi.py): the
# Cluster Operator, the Entity Operator's Topic and User Operators and the Kafka pods' init container
# (kafka-init) all run from it, as they run from quay.io/strimzi/operator.  The layout is upstream's
# (docker-images/operator/Dockerfile on docker-images/base): /opt/strimzi/bin holds the launch
# scripts (cluster_operator_run.sh, topic_operator_run.sh, user_operator_run.sh, kafka_init_run.sh,
# launch_java.sh), /opt/strimzi/lib the jars; tini is PID 1's helper; openssl makes the cluster's
# CAs and certificates (the Cluster Operator's OpenSslCertIssuer).
# The build context is what strimzi.build() leaves in ~/.cache/simplecqrs/strimzi-1.2.0: operator/
# (the four operators' -dist.zips unpacked) and jre/, a Java runtime made with jlink.
#
# BASE_IMAGE: the Debian root the stack makes (images.py).
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
# tini and openssl from Debian (upstream downloads tini from GitHub and takes openssl from UBI).
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tini openssl \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt/* /var/log/dpkg.log \
 && test -x /usr/bin/tini
# As Strimzi's images: user strimzi, uid 1001, group 0.  The jars belong to root (read-only to it).
RUN useradd --system --uid 1001 --gid 0 --home-dir /opt/strimzi --no-create-home --shell /usr/sbin/nologin strimzi
ENV STRIMZI_VERSION=1.2.0 \
    STRIMZI_HOME=/opt/strimzi
WORKDIR /opt/strimzi
COPY operator/ /opt/strimzi/
USER 1001
# No ENTRYPOINT: the Cluster Operator's Deployment and the pods it makes name the script to run
# (/opt/strimzi/bin/cluster_operator_run.sh, .../topic_operator_run.sh, ...), as with upstream's image.
