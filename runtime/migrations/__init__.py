"""Alembic migrations for the store tables (incidents, approval_answers, state_blobs, leader_lease)."""
