"""Reconcilers, one per resource kind, and the loop that runs them (leases keep conductors apart)."""
