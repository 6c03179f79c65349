"""The run log: one typed record per segmentation in SQLite, and its summary."""

from sam_core.runlog.store import RECORD_FIELDS, SCHEMA_VERSION, RunLog, main, summarize

__all__ = ["RECORD_FIELDS", "SCHEMA_VERSION", "RunLog", "main", "summarize"]
