"""The append-only, hash-chained audit log: every observation, decision, approval, action and
verification the loop makes lands here, so auditors can verify and replay it."""

from runtime.audit._chain import GENESIS_HASH, AuditRecord, Hasher, hashed_message
from runtime.audit._store import (
    HMAC_KEY_ENV,
    HMAC_KEY_FILE_ENV,
    AuditError,
    AuditLog,
    load_hmac_key_from_env,
)
from runtime.audit._verify import VerifyReport

__all__ = [
    "GENESIS_HASH",
    "HMAC_KEY_ENV",
    "HMAC_KEY_FILE_ENV",
    "AuditError",
    "AuditLog",
    "AuditRecord",
    "Hasher",
    "VerifyReport",
    "hashed_message",
    "load_hmac_key_from_env",
]
