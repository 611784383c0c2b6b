"""Probes: talk to Exchange (or the lab) once and return facts."""
