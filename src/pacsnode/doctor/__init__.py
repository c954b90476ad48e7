"""``pacsnode doctor``: what another DICOM node accepts, and why it does not talk to us.

:func:`~pacsnode.doctor.probe.diagnose` probes a node with our own requestor, step by
step (network, storage, query/retrieve, workflow), each step a
:class:`~pacsnode.doctor.report.Finding` with a hint in plain words when it fails;
:mod:`.fix` turns what was learnt into our remote AE entry for the node.
"""
