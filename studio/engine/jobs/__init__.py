"""Background jobs: the studio runs training, evaluation and export as child processes (``child.py`` starts, recognises
and signals them); ``training.py`` is the run queue, ``evaluation.py`` and ``export.py`` the other two job kinds. Pure
standard library: the UI process imports them without torch.
"""
