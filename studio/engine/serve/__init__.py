"""``studio serve``: an OpenAI-compatible HTTP server for a base model, an adapter, a run, a merged folder or a GGUF."""
