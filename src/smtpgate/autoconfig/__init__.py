"""Client auto-configuration: the documents mail clients fetch so that nobody types a server setting.

Thunderbird's autoconfig (`clientConfig` 1.1), Outlook's autodiscover (the POX schema) and
Apple's configuration profile (`com.apple.mail.managed`). Pure functions over
`ClientSettings`, built from `[autoconfig]` (docs/autoconfig.md); the admin listener serves
the first two, the operations layer builds the profile for a credential.
"""

from smtpgate.autoconfig.settings import (
    AutoconfigUnavailable,
    ClientSettings,
    IncomingServer,
    settings_from,
)

__all__ = ["AutoconfigUnavailable", "ClientSettings", "IncomingServer", "settings_from"]
