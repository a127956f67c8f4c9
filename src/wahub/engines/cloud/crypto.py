"""Cloud API credentials sealed at rest with Fernet (AES-128-CBC + HMAC-SHA256, ``cryptography``).

The key comes from a setting (``WAHUB_CLOUD_CREDENTIALS_KEY``): one or more Fernet keys separated
by commas; the first seals, all open, so a key can be rotated by prepending the new one and
re-sealing. A sealed value is opaque text safe to store in a database column. Nothing here logs,
and errors never include the plaintext.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from wahub.engines.cloud.account import CloudAccount


class CredentialsKeyError(ValueError):
    """The key setting is missing or malformed, or a sealed value does not open with it."""


def generate_key() -> str:
    """A fresh key for ``WAHUB_CLOUD_CREDENTIALS_KEY``."""
    return Fernet.generate_key().decode("ascii")


class CredentialsCipher:
    """Seals and opens :class:`CloudAccount` values with the configured key(s)."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise CredentialsKeyError("WAHUB_CLOUD_CREDENTIALS_KEY is not set: cloud credentials cannot be stored")
        try:
            self._fernet = MultiFernet([Fernet(k.encode("ascii")) for k in parts])
        except (ValueError, UnicodeEncodeError) as exc:
            raise CredentialsKeyError("WAHUB_CLOUD_CREDENTIALS_KEY must be Fernet keys (32 url-safe base64 bytes), "
                                      "comma-separated") from exc

    def seal(self, account: CloudAccount) -> str:
        """The account (secrets included) encrypted and authenticated, as ASCII text."""
        plain = json.dumps(account.to_json(), separators=(",", ":")).encode("utf-8")
        return self._fernet.encrypt(plain).decode("ascii")

    def open(self, sealed: str) -> CloudAccount:
        """The account back from :meth:`seal`'s output. Raises CredentialsKeyError when it does not open."""
        try:
            plain = self._fernet.decrypt(sealed.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise CredentialsKeyError("stored cloud credentials do not open with WAHUB_CLOUD_CREDENTIALS_KEY "
                                      "(wrong or rotated-out key, or tampered value)") from exc
        return CloudAccount.from_json(json.loads(plain))

    def rotate(self, sealed: str) -> str:
        """``sealed`` re-encrypted with the first key (after a key rotation)."""
        try:
            return self._fernet.rotate(sealed.encode("ascii")).decode("ascii")
        except InvalidToken as exc:
            raise CredentialsKeyError("stored cloud credentials do not open with any configured key") from exc
