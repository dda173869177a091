"""The composition root: builds the store and the services from one Config.

Both faces (the CLI and the server) get their parts here, so there is exactly one way a
credential service, a store or a capture store comes into being.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from smtpgate.config import Config
from smtpgate.credentials import CredentialService
from smtpgate.store import Store, open_store

if TYPE_CHECKING:
    from smtpgate.delivery import Spool
    from smtpgate.delivery.capture import CaptureStore


class Runtime:
    def __init__(self, config: Config) -> None:
        self.config = config

    @cached_property
    def store(self) -> Store:
        return open_store(self.config.database_url)

    @cached_property
    def credentials(self) -> CredentialService:
        return CredentialService.from_config(self.config, self.store)

    @cached_property
    def capture(self) -> CaptureStore:
        from smtpgate.delivery.capture import CaptureStore

        return CaptureStore(self.config.capture_dir)

    @cached_property
    def spool(self) -> Spool:
        """Where the SMTP server puts accepted messages ([delivery] mode)."""
        return self.capture

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.dispose()
