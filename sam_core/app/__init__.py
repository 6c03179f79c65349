"""The headless application: per-visitor sessions, the shared Studio service and exports.

Imports ``sam_core.core``, ``sam_core.model`` and ``sam_core.runlog``; never gradio.
"""
