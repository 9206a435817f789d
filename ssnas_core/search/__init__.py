"""The search engine: bi-level optimisation of supernet weights and architecture weights."""
