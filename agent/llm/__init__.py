"""LLM engines: the one narrow interface (``Engine``) the ranker and the agent talk to.

- ``engine.py``: the interface, the adapter allow-list and the errors.
- ``transformers_engine.py``: in-process transformers + peft (tests, machines without vLLM).
- ``vllm_engine.py``: a vLLM OpenAI-compatible server reached over HTTP (the default).
- ``server.py``: starts and stops that server (``muse llm serve``).

``agent/llm/session.py`` opens the engine the settings name, for the length of one command.
"""
