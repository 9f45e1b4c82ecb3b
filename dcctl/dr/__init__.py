"""Disaster recovery: changed-block replication to the provincial DR site, RPO tracking, drills, failover."""
