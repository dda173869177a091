"""Deliverability: what receivers will make of the mail smtpgate sends, and acting on it early.

`records`: every DNS record a domain should publish for the route its mail takes (and the
MTA-STS policy the admin listener serves). `foresight`: at submission, a From: domain whose
DMARC policy would reject what the route can send is refused or reported. `reputation`:
outbound addresses watched on DNS blocklists, delivery outcomes watched for sudden rises.
The DKIM keys themselves are `delivery.keyring`'s.
"""
