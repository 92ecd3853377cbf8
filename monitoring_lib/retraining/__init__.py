"""Retraining: the decision policy over drift history, and the retraining job it triggers."""
