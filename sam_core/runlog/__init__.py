"""The run log: one typed record per segmentation in SQLite, and its summary."""

from sam_core.runlog.schema import RECORD_FIELDS, RunRecord
from sam_core.runlog.store import SCHEMA_VERSION, RunLog
from sam_core.runlog.summary import main, summarize

__all__ = ["RECORD_FIELDS", "SCHEMA_VERSION", "RunLog", "RunRecord", "main", "summarize"]
