"""Evaluation: ``predict.py`` generates base and tuned answers for a dataset or a run's held-out rows and scores them;
``scores.py`` holds the text metrics (EM, F1, ROUGE-L, BLEU) and custom metrics; ``lm_harness.py`` runs lm-evaluation-harness.
"""
