"""The passive tap: SIP dialogs and their RTP followed on a mirror port or in capture files."""
