#!/usr/bin/env python3
"""The header reads of one accepted message, timed alone (a micro-benchmark, not a test).

Session._check_headers reads From (present?) and then From, Sender, Resent-From and
Resent-Sender as mailboxes; the capture reads Subject. Each message hands over a new
bytes object, as the spool does.

    .venv/bin/python bench/headers_micro.py
"""
import timeit

from smtpgate.delivery.headers import header_values, mailboxes

# what a typical client sends (the loadgen's header section, and a longer one of a mail client)
small = (b"From: <bench@example.test>\r\nTo: <sink@example.test>\r\nSubject: smtpgate benchmark\r\n"
         b"Date: Sun, 06 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1234567890.1@bench>\r\n\r\n")
big = (b"Received: from [10.0.0.5] (helo)\r\n by mail.example with ESMTPSA id 123\r\n for <a@example.net>; Sun, 6 Dec 2026\r\n"
       b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary=\"0000000000001234567890abcdef\"\r\n"
       b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=s1;\r\n h=from:to:subject:date;\r\n bh=abcdefabcdefabcdefabcdefabcdefabcdefabcdefa=;\r\n b=" + b"x" * 340 + b"\r\n"
       b"From: \"Alice Example\" <alice@example.com>\r\nTo: Bob <bob@example.net>, Carol <carol@example.org>\r\n"
       b"Subject: =?UTF-8?Q?Quarterly_report?=\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n"
       b"Message-ID: <CAF1234567890@mail.example.com>\r\nX-Mailer: Something 1.2\r\n\r\n")
def per_message(block):
    # what Session._check_headers and the capture's subject read do for one message
    bytes(block)  # fresh object per message, as the spool hands out
    header_values(block, "From")
    for name in ("From", "Sender", "Resent-From", "Resent-Sender"):
        mailboxes(block, name)
    header_values(block, "Subject")
for label, block in (("loadgen header section", small), ("mail-client header section", big)):
    blocks = [bytes(bytearray(block)) for _ in range(20000)]  # a new bytes object per message
    it = iter(blocks)
    n = 20000
    t = min(timeit.timeit(lambda it=it: per_message(next(it)), number=n // 4) for it in [iter(blocks[i:]) for i in (0, 5000, 10000, 15000)])
    print(f"{label}: {t / (n // 4) * 1e6:.1f} us per message")
