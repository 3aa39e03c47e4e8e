"""Learning rules for online adaptation, behind one interface (:class:`base.Rule`).

Importing the package registers every rule; :data:`NAMES` is the one list of them that the
CLI, the benchmarks and the service offer.
"""

from . import bptt, decolle, drtp, eprop, etlp, readout, tess, tp  # noqa: F401  (register)
from .base import (
    RULES,
    Rule,
    check_hyperparameters,
    config_class,
    defaults,
    hyperparameter_names,
    make_rule,
    parse_value,
)

NAMES: tuple[str, ...] = ("tp", "readout", "bptt", "tess", "eprop", "etlp", "drtp", "decolle")
assert set(NAMES) == set(RULES), "a registered rule is missing from NAMES"

__all__ = ["NAMES", "RULES", "Rule", "check_hyperparameters", "config_class", "defaults",
           "hyperparameter_names", "make_rule", "parse_value"]
