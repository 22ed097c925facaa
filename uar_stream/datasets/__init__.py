"""Datasets: FER+ faces with their annotators' votes."""
