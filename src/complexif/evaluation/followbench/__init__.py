"""FollowBench (Jiang et al. 2024): data, rule-based scorers, LLM judge and HSR/SSR/CSL metrics."""
