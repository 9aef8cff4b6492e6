"""Conifer (Sun et al. 2024): complex constrained instructions built level by level by a teacher
LLM, filtered twice, answered, and given internal and external process feedback."""
