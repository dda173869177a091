"""Backup and restore of a whole installation: database, keys, certificates, queue and capture.

A backup is a folder: `manifest.json` (what, when, and a SHA-256 per file) beside
`data/` (the data dir's files) and the database (`database.sqlite`, a snapshot taken
with SQLite's online backup API, or `database.pgdump`, pg_dump's custom format). It is
taken while the server runs: the database snapshot is transactionally consistent, and
every queued or captured message is copied whole (data before metadata, never a file of
`tmp/`), so the backup holds each message completely or not at all.

Restore checks every checksum before it writes anything, and refuses a non-empty data
dir unless told to replace it (the old contents are kept aside, never deleted).
"""

from smtpgate.backup.archive import BackupError, BackupSummary, create_backup, describe, restore_backup

__all__ = ["BackupError", "BackupSummary", "create_backup", "describe", "restore_backup"]
