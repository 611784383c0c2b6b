"""Plugins the tests load into audit subprocesses (-p tests.plugins.NAME) to inject
faults: a stalled server, a broken rule, a signal or a kill at a chosen moment."""
