"""Export: ``merge.py`` merges or combines adapters and saves a verified folder; ``gguf.py`` writes and checks GGUF files
and the Ollama Modelfile; ``verify.py`` is the logits check both use; ``model_card.py`` writes the README.md card.
"""
