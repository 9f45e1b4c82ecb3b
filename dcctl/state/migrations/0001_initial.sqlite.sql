-- schema version 1 (SQLite): the state as dcctl 0.x created it; every table the state keeps.
-- Statements end with ';' at the end of a line; '--' comments are stripped before they are split.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    inventory TEXT NOT NULL,
    plan_digest TEXT,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    backend TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    phase TEXT NOT NULL,
    error TEXT,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS resources (
    backend TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    run_id INTEGER,
    PRIMARY KEY (backend, key)
);
-- the audit trail: append-only, each entry hash-chained to the one before (dcctl/state/audit.py)
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    plan_digest TEXT NOT NULL DEFAULT '',
    before_digest TEXT NOT NULL DEFAULT '',
    after_digest TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}',
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);
-- the DR catalog (dcctl/dr/catalog.py): one row per replicated disk per point; a workload's consistent point is
-- the set of rows sharing point_set
CREATE TABLE IF NOT EXISTS dr_points (
    id INTEGER PRIMARY KEY,
    point_set TEXT NOT NULL,
    workload TEXT NOT NULL,
    server TEXT NOT NULL,
    disk TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- full | incremental
    parent_id INTEGER REFERENCES dr_points(id),
    checkpoint TEXT NOT NULL,           -- libvirt checkpoint (or cinder snapshot) the point was taken at
    source_backend TEXT NOT NULL,
    target_backend TEXT NOT NULL,
    target_path TEXT NOT NULL,
    taken_at TEXT NOT NULL,
    verified_at TEXT,
    status TEXT NOT NULL,               -- pending | good | failed | expired
    size_bytes INTEGER NOT NULL DEFAULT 0,
    changed_bytes INTEGER NOT NULL DEFAULT 0,
    shipped_bytes INTEGER NOT NULL DEFAULT 0,
    checksum TEXT NOT NULL DEFAULT '',
    run_id INTEGER
);
CREATE INDEX IF NOT EXISTS dr_points_workload ON dr_points(workload, taken_at);
CREATE TABLE IF NOT EXISTS dr_drills (
    id INTEGER PRIMARY KEY,
    workload TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- drill | failover | failback
    point_set TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    rto_seconds REAL,
    ok INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS dr_placement (
    workload TEXT PRIMARY KEY,
    active_site TEXT NOT NULL,          -- production | dr
    since TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS locks (
    backend TEXT PRIMARY KEY,
    run_id INTEGER,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    command TEXT NOT NULL,
    since TEXT NOT NULL
);
