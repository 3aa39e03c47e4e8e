"""tracekws model: audio front end, spike encoder, spiking network, learning rules.

This package holds no HTTP; the service imports it, never the other way round.
"""

__version__ = "0.1.0"
