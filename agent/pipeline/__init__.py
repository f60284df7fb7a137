"""One request, in the order it runs: intent, candidates, ranking, diversity, texts, impression."""
