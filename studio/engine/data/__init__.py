"""Datasets: reading files (``formats.py``, ``rowfile.py``), LLaMA-Factory folders (``dataset_info.py``), turning rows into
training examples (``load.py``, ``preference.py``, ``prompts.py``), and the data studio's view, editable versioned copies,
row forms and mixes (``view.py``, ``workspace.py``, ``rowform.py``, ``mix.py``).
"""
