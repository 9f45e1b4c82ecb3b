"""Plans: what would change, and why, before anything changes."""
