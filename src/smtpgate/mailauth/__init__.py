"""Mail-authentication records (SPF, DKIM, DMARC, MTA-STS, TLS-RPT) read and judged from DNS.

A neutral package: it knows DNS and the RFCs, nothing of the server. The doctor (a client of
any domain) and the server's deliverability checks both use it, so a record is judged the
same way by the command that checks it and by the server that relies on it.
"""
