"""Self-cognition: ``identity.py`` builds the identity and replay data of a new name and maker; ``probe.py`` asks held-out
identity and general questions to the base and the tuned model and scores them.
"""
