-- schema version 2: indexes for the lookups that grow with the state's age: a run's journal (resume, status),
-- audit entries by time (prune) and drills by workload (RTO, reports).
CREATE INDEX IF NOT EXISTS journal_run ON journal(run_id, id);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE INDEX IF NOT EXISTS dr_drills_workload ON dr_drills(workload, started_at);
