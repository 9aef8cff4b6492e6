"""InFoBench (Qin et al. 2024): instructions decomposed into YES/NO questions, judged by an LLM.

``data`` loads and validates the items and draws seeded subsets, ``judge`` asks an LLM judge each
item's questions in one growing chat, and ``metrics`` computes the Decomposed Requirements
Following Ratio (DRFR) overall and on the Easy and Hard sets.
"""
