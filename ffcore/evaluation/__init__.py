"""Evaluation: the official WIDER FACE protocol (vectorised and loop reference), inference."""
