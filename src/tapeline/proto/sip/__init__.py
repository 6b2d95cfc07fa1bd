"""SIP for the SRS: RFC 3261 parsing, framing, serialising, transactions and dialogs."""
