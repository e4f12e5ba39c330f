"""Fault injection across processes, hosts and every broker: ``python -m benchmarks.chaos``.

For each queue (``_queues.KINDS``) x fault (``_scenario.FAULTS``): N consumer processes of
the real CLI on one fresh queue, M messages, faults on a schedule, then one check: every
message handled at least once or dead-lettered by design, none lost; duplicates counted and
traced to the fault that made them. Writes the table to docs/RELIABILITY.md.
"""
