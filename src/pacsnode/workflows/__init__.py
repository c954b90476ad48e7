"""Workflows: what the archive does on its own, through the durable job queue.

Routing, prefetch, retrieve into the archive, instance availability notification,
MPPS forwarding, storage commitment reports and printing. Each registers its job
kind with the workers and is used by whichever door starts it (DIMSE, REST, CLI).
"""
