"""Offline measurement: the retrieval protocol and the ranker over it (`muse eval`)."""
