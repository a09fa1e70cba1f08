"""The notifier: turns firing and resolved alerts into messages on-call staff receive.

It reads alerts from the store (the processor writes them), routes them through the routing tree
(``peakwatch.domain.routing``: grouping, silences, inhibition, maintenance windows, escalation) and
delivers each message to its channels (``peakwatch.channels``: one folder per channel, and their table),
keeping what it sent in the database so a restart neither repeats nor forgets a notification.
"""
