"""Turning logged feedback into preference data and new LoRA adapters (issues 3 and 5).

Nothing is trained here yet: the retrieval models train in ``retrieval/`` and are fitted by
``muse index`` / ``muse eval``.
"""
