"""Benchmarks of the service against a real server process: throughput and latency
(``tracekws bench service``) and /adapt fairness (``python -m tracekws.service.bench.fairness``).
The service never imports them."""
