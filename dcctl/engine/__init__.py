"""The engine: apply a plan in dependency order, bounded per backend, journaled, retried, resumable."""
