"""Diagnosers: deterministic (default) and LLM-backed, behind one interface."""
