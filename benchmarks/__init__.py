"""Benchmarks of queue_consumer against hand-written references: ``python -m benchmarks``.

Every trial runs in a fresh subprocess (``_trial``), so peak RSS is its own and no thread
or allocator state leaks from one runner into the next; runs of the runners of a workload
are interleaved, so noise from a shared machine hits them all alike.
"""
