"""The engine: everything that trains, evaluates, exports and reads data, as plain functions returning plain data.

Never imports gradio or ``studio.ui`` (tests/unit/test_architecture.py checks). One folder per subsystem: ``data/``,
``train/``, ``jobs/``, ``selfcog/``, ``evaluate/``, ``export/``; ``models.py`` (loading), ``generate.py`` (chat and batch
generation), ``rundir.py`` (the run folder, the record of a run) and ``curves.py`` (training curves from metrics.jsonl).
"""
