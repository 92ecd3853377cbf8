"""Storing and loading reference profiles: versioned per model version, exactly one active."""

from __future__ import annotations

import dataclasses

import psycopg
from psycopg.types.json import Jsonb

from monitoring_lib.drift.profile import ReferenceProfile


def save_profile(conn: psycopg.Connection, profile: ReferenceProfile) -> ReferenceProfile:
    """Store as the next version for (endpoint, model version) and make it the active one."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"profile:{profile.endpoint_id}",))
    version = conn.execute(
        "SELECT coalesce(max(version), 0) + 1 FROM monitoring.reference_profiles"
        " WHERE endpoint_id = %s AND model_version = %s",
        (profile.endpoint_id, profile.model_version),
    ).fetchone()[0]
    stored = dataclasses.replace(profile, version=int(version))
    conn.execute(
        "UPDATE monitoring.reference_profiles SET is_active = false"
        " WHERE endpoint_id = %s AND model_version = %s AND is_active",
        (profile.endpoint_id, profile.model_version),
    )
    conn.execute(
        "INSERT INTO monitoring.reference_profiles"
        " (endpoint_id, model_version, version, source, row_count, profile, is_active)"
        " VALUES (%s, %s, %s, %s, %s, %s, true)",
        (stored.endpoint_id, stored.model_version, stored.version, stored.source, stored.row_count,
         Jsonb(stored.to_dict())),
    )
    return stored


def load_active_profile(conn: psycopg.Connection, endpoint_id: str, model_version: str) -> ReferenceProfile | None:
    row = conn.execute(
        "SELECT profile, version FROM monitoring.reference_profiles"
        " WHERE endpoint_id = %s AND model_version = %s AND is_active",
        (endpoint_id, model_version),
    ).fetchone()
    if row is None:
        return None
    return dataclasses.replace(ReferenceProfile.from_dict(row[0]), version=int(row[1]))
