"""ewsready: audit an on-premises Exchange organisation for an outside calendar service.

The library holds what is not pytest-specific: settings, probes that gather facts,
rules that judge them, the remediation catalogue and report rendering. The pytest
layer (conftest.py, fixtures/, checks/) wires them together.
"""

__version__ = "0.1.0"
