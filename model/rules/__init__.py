"""Learning rules for online adaptation, behind one interface (:class:`base.Rule`)."""

from .base import RULES, Rule, make_rule

__all__ = ["RULES", "Rule", "make_rule"]
