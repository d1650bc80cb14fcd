-- The write model: customers, orders, the transactional outbox and idempotency keys.
-- Text keys use a binary collation so MySQL, MariaDB and Cassandra compare them alike.
CREATE TABLE IF NOT EXISTS customers (
    email       VARCHAR(254) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    first_name  VARCHAR(100) NOT NULL,
    last_name   VARCHAR(100) NOT NULL,
    created_at  DATETIME(3) NOT NULL,
    updated_at  DATETIME(3) NOT NULL,
    -- outbox sequence of the order whose names these are: the highest wins, as in the read model
    last_seq    BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS orders (
    id              CHAR(36) CHARACTER SET ascii NOT NULL,
    customer_email  VARCHAR(254) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    -- The names as given with this order (the event carries them; customers holds the latest).
    first_name      VARCHAR(100) NOT NULL,
    last_name       VARCHAR(100) NOT NULL,
    description     VARCHAR(500) NOT NULL,
    quantity        INT UNSIGNED NOT NULL,
    created_at      DATETIME(3) NOT NULL,
    seq             BIGINT UNSIGNED NOT NULL,  -- the outbox sequence of this order's event
    PRIMARY KEY (id),
    KEY orders_by_customer (customer_email, created_at),
    CONSTRAINT orders_customer_fk FOREIGN KEY (customer_email) REFERENCES customers (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- seq is the per-store monotonic sequence carried by every event.  Rows are
-- selected by `published_at IS NULL`, never by a high-water mark of seq:
-- transactions commit out of seq order, so a mark would skip rows.
CREATE TABLE IF NOT EXISTS outbox (
    seq           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    event_id      CHAR(36) CHARACTER SET ascii NOT NULL,
    event_type    VARCHAR(64) CHARACTER SET ascii NOT NULL,
    aggregate_id  CHAR(36) CHARACTER SET ascii NOT NULL,
    payload       MEDIUMTEXT NOT NULL,
    created_at    DATETIME(3) NOT NULL,
    published_at  DATETIME(3) NULL,
    attempts      INT UNSIGNED NOT NULL DEFAULT 0,
    last_error    VARCHAR(500) NULL,
    PRIMARY KEY (seq),
    UNIQUE KEY outbox_event_id (event_id),
    KEY outbox_unpublished (published_at, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS idempotency_keys (
    idem_key       VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    request_hash   CHAR(64) CHARACTER SET ascii NOT NULL,
    order_id       CHAR(36) CHARACTER SET ascii NOT NULL,
    created_at     DATETIME(3) NOT NULL,
    PRIMARY KEY (idem_key),
    KEY idempotency_keys_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
