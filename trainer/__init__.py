"""nailong_bot's trainer: data → model → loop → evaluate → export → search.

Run ``python -m trainer --help`` (or ``nailong-trainer --help``).
"""
