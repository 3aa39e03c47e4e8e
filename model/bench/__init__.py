"""Benchmarks of the model: inference speed, MACs, memory, personalisation, rules, enrolment.

Each prints JSON through ``tracekws bench ...``. They import the core (network, rules, data);
the core never imports them (tests/test_layering.py walks the imports and fails if it does).
"""
