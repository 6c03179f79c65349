"""The UI layer: everything that imports gradio lives here."""
