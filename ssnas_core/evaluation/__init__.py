"""Evaluation: MedMNIST's ACC/AUC and the imbalance-aware metrics."""
