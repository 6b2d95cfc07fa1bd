"""SRTP and SRTCP unprotect with SDES keys (RFC 3711, RFC 4568 §6.2) through libsrtp.

Only the receive side is needed: the SRS never sends media. Keys come from the SDP `a=crypto`
line (RFC 4568 §9.1: base64 of the 16-octet master key followed by the 14-octet master salt).
Strategy: a packet that fails authentication or replay checks is dropped and counted, never
raised into the pipeline: a mirror port or a misconfigured SBC can send thousands of them, and
one bad packet must not end a recording.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import TYPE_CHECKING, Final

import pylibsrtp

if TYPE_CHECKING:
    from collections.abc import Callable

MASTER_KEY_AND_SALT_LENGTH: Final = 30  # AES_CM_128: 16-octet key + 14-octet salt


class CryptoSuite(enum.StrEnum):
    """The SDES crypto suites we accept (RFC 4568 §6.2.1, §6.2.2)."""

    AES_CM_128_HMAC_SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
    AES_CM_128_HMAC_SHA1_32 = "AES_CM_128_HMAC_SHA1_32"


_PROFILES: Final = {
    CryptoSuite.AES_CM_128_HMAC_SHA1_80: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    CryptoSuite.AES_CM_128_HMAC_SHA1_32: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


class SrtpKeyError(ValueError):
    """An `a=crypto` key that is not base64 of a 30-octet master key and salt."""


def decode_sdes_key(key_params: str) -> bytes:
    """Decode the key of an `inline:` key parameter (RFC 4568 §6.1).

    Args:
        key_params: `inline:<base64>[|lifetime][|MKI:length]` or just the base64 text.

    Returns:
        The 30-octet master key followed by the master salt.

    Raises:
        SrtpKeyError: not base64, or not 30 octets.
    """
    text = key_params.removeprefix("inline:").split("|", 1)[0]
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise SrtpKeyError("SDES key is not base64") from exc
    if len(key) != MASTER_KEY_AND_SALT_LENGTH:
        raise SrtpKeyError("SDES key is not 30 octets of master key and salt")
    return key


class SrtpReceiver:
    """Unprotects one direction of SRTP and SRTCP, counting what it drops.

    Args:
        suite: the negotiated crypto suite.
        key: the 30-octet master key and salt (see `decode_sdes_key`).
    """

    def __init__(self, *, suite: CryptoSuite, key: bytes) -> None:
        if len(key) != MASTER_KEY_AND_SALT_LENGTH:
            raise SrtpKeyError("SDES key is not 30 octets of master key and salt")
        policy = pylibsrtp.Policy(
            key=key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=_PROFILES[suite],
        )
        self._session = pylibsrtp.Session(policy=policy)
        self.auth_failures = 0
        self.replays = 0
        self.other_failures = 0

    def unprotect(self, data: bytes) -> bytes | None:
        """Return the RTP packet inside an SRTP packet, or None when it was dropped and counted."""
        return self._run(self._session.unprotect, data)

    def unprotect_rtcp(self, data: bytes) -> bytes | None:
        """Return the RTCP compound inside an SRTCP packet, or None when dropped and counted."""
        return self._run(self._session.unprotect_rtcp, data)

    def _run(self, unprotect: Callable[[bytes], bytes], data: bytes) -> bytes | None:
        try:
            return unprotect(data)
        except pylibsrtp.Error as exc:
            message = str(exc)
            if "auth" in message:
                self.auth_failures += 1
            elif "replay" in message:
                self.replays += 1
            else:
                self.other_failures += 1
            return None
        except ValueError:  # longer than libsrtp's buffer, or too short to hold a tag
            self.other_failures += 1
            return None
