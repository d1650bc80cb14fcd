-- The binlog relay (OUTBOX_RELAY=binlog, app/binlog_relay.py) keeps its position here: the binlog
-- file and offset just past the last transaction whose events Kafka acknowledged, and the highest
-- outbox seq published (the API's backlog and the pruning read it).  One row per relay kind.
CREATE TABLE IF NOT EXISTS outbox_relay (
    name        VARCHAR(32) CHARACTER SET ascii NOT NULL,
    log_file    VARCHAR(255) CHARACTER SET ascii NOT NULL,
    log_pos     BIGINT UNSIGNED NOT NULL,
    last_seq    BIGINT UNSIGNED NOT NULL DEFAULT 0,
    updated_at  DATETIME(3) NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The binlog relay marks no row published: its pruning finds the rows past OUTBOX_RETENTION_HOURS
-- by their creation time (a range on this index, not a scan of every retained row).  (MySQL has no
-- ADD INDEX IF NOT EXISTS: this statement is the file's last, so a rerun follows only a crash
-- between it and the migration's record, and then fails loudly rather than doing harm.)
ALTER TABLE outbox ADD KEY outbox_created (created_at);
