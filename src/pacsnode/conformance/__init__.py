"""The DICOM Conformance Statement of a running node, made from its configuration.

:func:`~pacsnode.conformance.build.statement` reads the tables the network layer
negotiates from (the catalog, what the SCU side proposes, the matching keys of the
index) and the settings, never a copy of them, into a :class:`~.model.Statement`;
:mod:`.document` lays it out in the sections of PS3.2 Annex A, and :mod:`.render`
writes it as Markdown, HTML or JSON.
"""
