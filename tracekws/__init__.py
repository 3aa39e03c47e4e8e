"""tracekws: offline keyword spotting with a spiking network you personalise on-device.

One import root for everything: ``tracekws.model`` (audio front end, spike encoder, network,
learning rules, benchmarks; no HTTP), ``tracekws.service`` (the FastAPI service) and
``tracekws.cli`` (the command line, above both). In a wheel the two packages sit under this
folder; in a source checkout they are the repository's ``model/`` and ``service/`` folders,
mapped by setuptools' ``package-dir`` (pyproject.toml) and, when the checkout itself is on
``sys.path`` without an install, by the path entry below.
"""

from pathlib import Path

__version__ = "0.1.0"

_checkout = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "model").is_dir() and (_checkout / "model").is_dir():
    # a source checkout: tracekws.model -> <checkout>/model, tracekws.service -> <checkout>/service
    __path__.append(str(_checkout))  # noqa: F821 - the package's own __path__
