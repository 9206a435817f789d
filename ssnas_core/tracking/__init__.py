"""Tracking: the ``Tracker`` protocol the engines report to, and its adapters."""
