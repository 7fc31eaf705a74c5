"""Signing and verification keys for access tokens, loaded once per configuration.

Part of the configuration, not of keel.auth: `keel.settings` checks the keys when the settings
are read, so a wrong key stops every process at start with one line naming the variable.

HS* algorithms use one secret whose length must be at least the hash output size (RFC 7518 3.2).
RS*/ES*/EdDSA use PEM key files: the private key signs, the public key verifies; both are
checked against the configured algorithm so a key of the wrong kind is refused at start.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
RSA_MIN_BITS = 2048


class KeyConfigError(ValueError):
    """The configured key does not fit the algorithm; the message names the variable."""


@dataclass(frozen=True, slots=True)
class TokenKeys:
    algorithm: str
    signing_key: Any
    verifying_key: Any


def _read(path: str, variable: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise KeyConfigError(f"{variable}: cannot read {path}: {error.strerror}") from None


def _check_kind(algorithm: str, key: object, variable: str) -> None:
    if algorithm.startswith("RS"):
        if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
            raise KeyConfigError(f"{variable}: {algorithm} needs an RSA key")
        if key.key_size < RSA_MIN_BITS:
            raise KeyConfigError(f"{variable}: RSA keys must have at least {RSA_MIN_BITS} bits")
    elif algorithm == "ES256":
        if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) or (
            key.curve.name != "secp256r1"
        ):
            raise KeyConfigError(f"{variable}: ES256 needs a P-256 key")
    elif algorithm == "EdDSA" and not isinstance(
        key,
        ed25519.Ed25519PrivateKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PrivateKey
        | ed448.Ed448PublicKey,
    ):
        raise KeyConfigError(f"{variable}: EdDSA needs an Ed25519 or Ed448 key")


@functools.cache
def load_keys(
    algorithm: str, secret: str | None, private_file: str | None, public_file: str | None
) -> TokenKeys:
    """The keys for one configuration; cached, so files are read once per process."""
    if algorithm in HMAC_MIN_BYTES:
        assert secret is not None
        key = secret.encode()
        minimum = HMAC_MIN_BYTES[algorithm]
        if len(key) < minimum:
            raise KeyConfigError(
                f"JWT_SECRET_KEY (or SECRET_KEY when it is unset): {algorithm} needs a secret "
                f"of at least {minimum} bytes"
            )
        return TokenKeys(algorithm, key, key)
    if not private_file or not public_file:
        raise KeyConfigError(
            f"JWT_PRIVATE_KEY_FILE and JWT_PUBLIC_KEY_FILE must both be set for {algorithm}"
        )
    try:
        private_key = load_pem_private_key(
            _read(private_file, "JWT_PRIVATE_KEY_FILE"), password=None
        )
    except (ValueError, TypeError) as error:
        raise KeyConfigError(f"JWT_PRIVATE_KEY_FILE: not an unencrypted PEM key: {error}") from None
    try:
        public_key = load_pem_public_key(_read(public_file, "JWT_PUBLIC_KEY_FILE"))
    except ValueError as error:
        raise KeyConfigError(f"JWT_PUBLIC_KEY_FILE: not a PEM public key: {error}") from None
    _check_kind(algorithm, private_key, "JWT_PRIVATE_KEY_FILE")
    _check_kind(algorithm, public_key, "JWT_PUBLIC_KEY_FILE")
    return TokenKeys(algorithm, private_key, public_key)
