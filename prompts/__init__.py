"""Muse's Jinja2 prompt templates and worked examples, shipped as package data so an installed
``muse`` finds them (``agent.pipeline.prompts`` renders them; prompts/README.md says what each is)."""
