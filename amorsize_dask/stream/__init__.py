"""Streaming: ``imap`` reads its input lazily and keeps a bounded number of chunks in
flight (``imap``), plans from its first items and re-sizes chunks as the measured cost
moves (``planner``), on one engine's workers at a time (``submitters``)."""
