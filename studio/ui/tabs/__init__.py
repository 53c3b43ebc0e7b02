"""One file per tab of the page, each with ``build(ctx, lang)`` returning its component refs: thin handlers over the engine.
"""
