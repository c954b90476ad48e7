"""The remote AE table: the DICOM nodes the archive knows by AE title.

Every door and job looks remote nodes up here rather than in the settings, so that
the table can grow beyond the config file without each caller knowing where an
entry came from.
"""

from __future__ import annotations

from pacsnode.config import DuplicatePolicy, RemoteAE, Settings


class Remotes:
    def __init__(self, settings: Settings) -> None:
        self.default_duplicate_policy = settings.duplicate_policy
        self._configured = {remote.ae_title: remote for remote in settings.remote_ae}

    def get(self, ae_title: str) -> RemoteAE | None:
        return self._configured.get(ae_title.strip())

    def all(self) -> list[RemoteAE]:
        return sorted(self._configured.values(), key=lambda remote: remote.ae_title)

    def duplicate_policy_for(self, calling_ae: str) -> DuplicatePolicy:
        """What a SOP Instance UID sent again by this AE does (CDRClient re-sends edits)."""
        remote = self.get(calling_ae)
        if remote is not None and remote.duplicate_policy is not None:
            return remote.duplicate_policy
        return self.default_duplicate_policy
