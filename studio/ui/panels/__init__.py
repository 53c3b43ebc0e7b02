"""Pieces of the page a tab embeds: the self-cognition card (Train tab), the row form and the mix builder (Data tab).
"""
