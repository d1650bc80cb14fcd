# Strimzi's Kafka image for the local node, in the layout of quay.io/strimzi/kafka:1.2.0-kafka-4.3.1
# (Strimzi's docker-images/kafka-based/kafka/Dockerfile on its docker-images/base/Dockerfile), which
# Strimzi's Cluster Operator runs the brokers from: /opt/kafka/kafka_run.sh, the probes
# /opt/kafka/kafka_readiness.sh and kafka_liveness.sh, Kafka's bin/ scripts, libs/ with the Strimzi
# Kafka agent and Strimzi's third-party libraries, user 1001 in group 0.  Built by
# scripts/stack/kafkaimage.py; the context (~/.cache/simplecqrs/kafka-image-4.3.1) holds:
#   kafka/            Kafka's distribution layout: bin/, config/, libs/ (jars from Maven Central), LICENSE, NOTICE
#   scripts/          Strimzi's scripts (docker-images/kafka-based/kafka/scripts/)
#   agent/            kafka-agent-1.2.0.jar (Strimzi's source, built by strimzi.py)
#   thirdparty-libs/  Strimzi's third-party libraries (kafka-thirdparty-libs/4.3.x, less what Maven Central lacks)
#   jre/              a Java runtime jlinked from Temurin 25 (the agent needs Java 21+; bookworm has 17)
# Left out, as this stack uses none of them: Kafka Exporter (/opt/kafka-exporter), Cruise Control
# (/opt/cruise-control), the Prometheus JMX exporter agent (/opt/prometheus-jmx-exporter: only
# kafka_run.sh with KAFKA_JMX_EXPORTER_ENABLED=true, i.e. a Kafka resource with jmxPrometheusExporter
# metrics, uses it) and the tracing agent (Connect and MirrorMaker 2 only).
#
# BASE_IMAGE: the Debian bookworm root the stack makes (images.py); anything Debian-based with apt.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE}
ARG KAFKA_VERSION=4.3.1
ARG STRIMZI_VERSION=1.2.0

LABEL name='kafka' \
    version="${STRIMZI_VERSION}-${KAFKA_VERSION}" \
    release="${STRIMZI_VERSION}" \
    summary="Kafka ${KAFKA_VERSION} image in the layout of the Strimzi Kafka Operator's, built locally."

# What Strimzi's base and Kafka images install, from Debian:
#   tini        kafka_run.sh execs /usr/bin/tini (Strimzi's base image downloads the same 0.19.0)
#   openssl     as Strimzi's base image (TLS certificates in shell scripts)
#   net-tools   netstat: kafka_readiness.sh for controller-only nodes
#   curl        kafka_readiness.sh for brokers (the agent's http://localhost:8080/v1/ready/)
#   gawk        dynamic_resources.sh runs to_bytes.gawk
#   hostname    kafka_run.sh (the node id), set_kafka_jmx_options.sh (hostname -I)
#   findutils, procps, tar, gzip, unzip: xargs, find and ps for Kafka's scripts, as Strimzi's image
# (over plain http from Debian's mirror: nothing here needs the host's CA bundle)
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        tini openssl net-tools curl gawk hostname findutils procps tar gzip unzip \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && test -x /usr/bin/tini

# As Strimzi's image: user kafka, uid 1001, in group 0 (access to the mounted volumes and storage).
RUN useradd -r -m -u 1001 -g 0 kafka

# The Java runtime, where Strimzi's base image has its own (JAVA_HOME, and `java` on PATH:
# dynamic_resources.sh calls it by name).
COPY jre/ /usr/lib/jvm/jre/
ENV JAVA_HOME=/usr/lib/jvm/jre \
    PATH=/usr/lib/jvm/jre/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

ENV KAFKA_HOME=/opt/kafka \
    KAFKA_VERSION=${KAFKA_VERSION} \
    STRIMZI_VERSION=${STRIMZI_VERSION}

COPY kafka/ $KAFKA_HOME/
COPY scripts/ $KAFKA_HOME/
RUN mkdir $KAFKA_HOME/plugins

# The Strimzi agent (kafka_run.sh: -javaagent:$KAFKA_HOME/libs/kafka-agent*.jar), then the third-party libs.
COPY agent/ $KAFKA_HOME/libs/
COPY thirdparty-libs/ $KAFKA_HOME/libs/

WORKDIR $KAFKA_HOME

USER 1001
