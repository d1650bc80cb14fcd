#!/bin/sh
# Entrypoint of the development MySQL image (dev-stores.Dockerfile), with the official mysql
# image's contract: MYSQL_ROOT_PASSWORD on the first start, server options as arguments, data in
# /var/lib/mysql, run as uid 999.  (POSIX sh: the image is Debian sid's MySQL root, no Python.)
#
# First start (no completed initialisation in /var/lib/mysql): `mysqld --initialize-insecure`
# with an init file that sets root's password for 'root'@'localhost' and 'root'@'%' in the same
# step, so root is never open; the file lives in the pod's /tmp and is removed at once.  Only
# then is the directory marked initialised: an interrupted first start is started over.
set -eu
DATADIR=/var/lib/mysql
MARKER="$DATADIR/.simplecqrs-initialised"

if [ ! -f "$MARKER" ]; then
    if [ -z "${MYSQL_ROOT_PASSWORD:-}" ]; then
        echo "mysql: MYSQL_ROOT_PASSWORD is required on the first start" >&2
        exit 1
    fi
    find "$DATADIR" -mindepth 1 -delete          # what an interrupted first start left
    init=$(mktemp /tmp/init.XXXXXX)
    pw=$(printf '%s' "$MYSQL_ROOT_PASSWORD" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")
    cat > "$init" <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';
CREATE USER 'root'@'%' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
SQL
    mysqld --initialize-insecure --datadir="$DATADIR" --init-file="$init" || { rm -f "$init"; exit 1; }
    rm -f "$init"
    touch "$MARKER"
    echo "mysql: initialised $DATADIR"
fi
exec mysqld --datadir="$DATADIR" --bind-address=0.0.0.0 --socket=/run/mysqld/mysqld.sock \
    --secure-file-priv= --mysqlx=OFF "$@"
