"""RFC 3261 §25 ABNF rules used by the SIP parser, transcribed once as named regex fragments.

Only the rules the parser needs are here; each names its §25.1 production. Keeping grammar apart
from logic lets the parser read as a sequence of decisions and lets a reviewer check every rule
against the RFC in one place.
"""

import re
from typing import Final

# §25.1 token: one or more of alphanum and - . ! % * _ + ` ' ~
TOKEN: Final = r"[A-Za-z0-9\-.!%*_+`'~]+"  # noqa: S105  # the ABNF rule, not a credential

# Method = INVITEm / ... / extension-method; extension-method = token
METHOD: Final = TOKEN

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT  (compared case-insensitively, §7.1)
SIP_VERSION: Final = r"[Ss][Ii][Pp]/[0-9]+\.[0-9]+"

# The only version we speak (§7.1); anything else that matches SIP_VERSION gets 505.
SUPPORTED_VERSION: Final = "SIP/2.0"

# Request-Line = Method SP Request-URI SP SIP-Version CRLF
REQUEST_LINE: Final = re.compile(rf"(?P<method>{METHOD}) (?P<uri>[^ \t]+) (?P<version>[^ \t]+)")

# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF; Status-Code = 3DIGIT
STATUS_LINE: Final = re.compile(rf"(?P<version>{SIP_VERSION}) (?P<code>[0-9]{{3}}) ?(?P<reason>.*)")

# Any "SIP/x.y" on the start line, so that a well-formed but foreign version answers 505.
VERSION_RE: Final = re.compile(SIP_VERSION)

# message-header = header-name HCOLON header-value; HCOLON = *( SP / HTAB ) ":" SWS
HEADER_LINE: Final = re.compile(rf"(?P<name>{TOKEN})[ \t]*:[ \t]*(?P<value>.*)")

# Via magic cookie (§8.1.1.7): branches starting with it are RFC 3261 transaction ids.
MAGIC_COOKIE: Final = "z9hG4bK"

# End of the message head: the first empty line. RFC 3261 asks for CRLF; bare LF is tolerated
# because SBC-generated and hand-written messages carry it (siprec.md §15).
HEAD_END: Final = re.compile(rb"\r?\n\r?\n")

# Line break inside a head, CRLF or bare LF.
LINE_BREAK: Final = re.compile(r"\r?\n")

# Content-Length = ( "Content-Length" / "l" ) HCOLON 1*DIGIT
DIGITS: Final = re.compile(r"[0-9]+")
