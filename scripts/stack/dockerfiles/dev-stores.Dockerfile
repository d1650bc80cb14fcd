# The development stores of charts/simplecqrs (values-dev.yaml: mysql.deploy, cassandra.deploy),
# built here for the local node, where Docker Hub's mysql and cassandra images cannot be pulled.
# They keep the contract the chart relies on (the same contract as those images): MySQL reads
# MYSQL_ROOT_PASSWORD on its first start and takes mysqld options as arguments; Cassandra
# reads CASSANDRA_CLUSTER_NAME, CASSANDRA_DC, CASSANDRA_ENDPOINT_SNITCH, CASSANDRA_NUM_TOKENS,
# MAX_HEAP_SIZE, HEAP_NEWSIZE and its configuration from $CASSANDRA_CONF (default /etc/cassandra).
# Both run as uid/gid 999 with a read-only root filesystem (the chart mounts the writable paths).
# Built by scripts/stack/devstores.py: `docker build --target mysql|cassandra`, the context
# holding the entrypoints and Cassandra's jars and rendered configuration.
# Development only: never a production database image.
ARG BASE_IMAGE=debian:bookworm-slim
ARG MYSQL_BASE=debian:sid-slim

# A Debian root where no service starts during `apt-get install` (there is no init).
FROM ${BASE_IMAGE} AS debian
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d

# ---------------------------------------------------------------- MySQL (Oracle's 9.7, Debian sid)
# MYSQL_BASE: the sid root the host's MySQL runs from (scripts/stack/mysql.py), imported as is.
FROM ${MYSQL_BASE} AS mysql
RUN groupadd --system --gid 999 mysql \
 && useradd --system --uid 999 --gid 999 --home-dir /var/lib/mysql --no-create-home --shell /usr/sbin/nologin mysql \
 && install -d -o mysql -g mysql /run/mysqld /var/lib/mysql
COPY mysql-entrypoint.sh /usr/local/bin/docker-entrypoint
USER 999:999
EXPOSE 3306
ENTRYPOINT ["/usr/local/bin/docker-entrypoint"]

# ---------------------------------------------------------------- Cassandra (jars from Maven Central)
FROM debian AS cassandra
# The base root carries no man pages, and the JRE's postinst registers `java` with update-alternatives,
# which links its man page into /usr/share/man/man1 and fails where that directory is missing.
RUN mkdir -p /usr/share/man/man1 \
 && groupadd --system --gid 999 cassandra \
 && useradd --system --uid 999 --gid 999 --home-dir /var/lib/cassandra --no-create-home --shell /usr/sbin/nologin cassandra \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o cassandra -g cassandra /var/lib/cassandra /var/log/cassandra
COPY cassandra/lib/ /opt/cassandra/lib/
COPY cassandra/conf/ /etc/cassandra/
COPY cassandra-entrypoint.py /usr/local/bin/docker-entrypoint
USER 999:999
EXPOSE 7000 9042
ENTRYPOINT ["python3", "/usr/local/bin/docker-entrypoint"]
