"""smtpgate: an SMTP submission gateway built around the SMTP password done right."""

__version__ = "0.1.0"
