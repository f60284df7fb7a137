"""The HTTP edge: the FastAPI app, its routes, wire models, the OpenAI chat layer and API keys."""
