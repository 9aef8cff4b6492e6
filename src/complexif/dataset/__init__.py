"""Curated sets as datasets: export to Parquet with a card, and the analysis behind the card."""
