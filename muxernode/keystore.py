"""The wallet's encrypted keystore: one JSON file per key in a private directory.

Layout: ``<dir>/<name>.json``, the directory mode 0700 and each file mode 0600, created with
``O_CREAT | O_EXCL`` so that an existing key is never overwritten and the file is never
readable by others, not even for an instant (a chmod after writing would leave a window).

A key file (version 1)::

    {"version": 1, "name": "alice", "address": "mx…", "public_key": "<64 hex>",
     "kdf": "scrypt", "kdf_params": {"salt": "<32 hex>", "n": 32768, "r": 8, "p": 1,
                                     "dklen": 32},
     "cipher": "chacha20poly1305", "nonce": "<24 hex>", "ciphertext": "<96 hex>"}

The 32-byte Ed25519 seed is sealed with ChaCha20-Poly1305 under a key derived from the
passphrase by scrypt. The associated data binds the name and the address, so a file that
was renamed, or whose address was edited to show someone else's, fails to unlock instead of
signing with a key the user did not mean. The address and public key are stored in clear so
that ``list`` and ``show`` need no passphrase; ``unlock`` checks that the decrypted seed
really gives them.

The seed is never printed or logged: ``PrivateKey`` does not show it in its repr, and this
module has no export.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from consensus.crypto import AddressError, PrivateKey, address_from_text, address_to_text

__all__ = [
    "DEFAULT_SCRYPT_N",
    "BadName",
    "BadSeed",
    "CorruptKeyFile",
    "KeyExists",
    "KeyInfo",
    "Keystore",
    "KeystoreError",
    "UnknownKey",
    "WrongPassphrase",
    "default_keystore_dir",
    "read_passphrase",
    "read_seed_hex",
]

VERSION = 1
KDF = "scrypt"
CIPHER = "chacha20poly1305"
DEFAULT_SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_LEN = 16
NONCE_LEN = 12
SEED_LEN = 32
# Bounds on the scrypt parameters read back from a file: a hostile or corrupt file must not
# make unlock allocate gigabytes (scrypt needs 128 * n * r bytes) or run for hours.
MAX_SCRYPT_N = 2**20
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16
# Names: a letter or digit, then letters, digits, '_', '.', '-'; at most 32. No separators or
# leading dot (no path games), and short enough that a name is never 64 hex digits, which the
# wallet reads as a claim or tx id.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_AAD_TAG = b"MUXER/keystore/v1"
ENV_PASSPHRASE = "MUXER_PASSPHRASE"
ENV_SEED = "MUXER_SEED"


class KeystoreError(Exception):
    """A keystore operation failed for a reason the user can act on; str() says which."""


class UnknownKey(KeystoreError):
    pass


class KeyExists(KeystoreError):
    pass


class BadName(KeystoreError):
    pass


class BadSeed(KeystoreError):
    pass


class WrongPassphrase(KeystoreError):
    pass


class CorruptKeyFile(KeystoreError):
    pass


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """The public part of a key file: everything but the secret."""

    name: str
    address: str
    public_key: str
    path: Path

    def as_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "address": self.address,
            "public_key": self.public_key,
            "path": str(self.path),
        }


def default_keystore_dir() -> Path:
    return Path.home() / ".muxer" / "keys"


def check_name(name: str) -> str:
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise BadName(
            f"bad key name {str(name)[:40]!r}: use 1-32 characters of letters, digits, "
            "'_', '.' and '-', starting with a letter or digit"
        )
    return name


def _normalize_passphrase(passphrase: str) -> bytes:
    # NFKC (as BIP-39 does) so the same passphrase typed on two systems that compose
    # accented characters differently gives the same bytes.
    return unicodedata.normalize("NFKC", passphrase).encode("utf-8")


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(_normalize_passphrase(passphrase))


def _aad(name: str, address: str) -> bytes:
    return b"\x00".join((_AAD_TAG, name.encode(), address.encode()))


def parse_seed_hex(seed_hex: str) -> bytes:
    """32 bytes from 64 hex digits (either case; surrounding whitespace ignored)."""
    s = seed_hex.strip()
    if s[:2] in ("0x", "0X"):
        raise BadSeed("write the seed as 64 hex digits without a 0x prefix")
    if len(s) != 2 * SEED_LEN:
        raise BadSeed(f"a seed is {2 * SEED_LEN} hex digits (32 bytes), got {len(s)} characters")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise BadSeed("the seed must be hex digits only (0-9, a-f)") from None


class Keystore:
    """The key files in one directory. ``scrypt_n`` applies to keys created from now on
    (tests pass a small one); unlocking always uses the parameters stored in the file."""

    def __init__(self, path: Path | str, *, scrypt_n: int = DEFAULT_SCRYPT_N) -> None:
        if scrypt_n < 2 or scrypt_n & (scrypt_n - 1) or scrypt_n > MAX_SCRYPT_N:
            raise ValueError(f"scrypt n must be a power of 2 in [2, {MAX_SCRYPT_N}]")
        self.path = Path(path).expanduser()
        self.scrypt_n = scrypt_n

    def file_of(self, name: str) -> Path:
        return self.path / f"{check_name(name)}.json"

    # --- writing ------------------------------------------------------------------------

    def create(self, name: str, passphrase: str) -> KeyInfo:
        """A new random key, sealed under passphrase."""
        return self._store(name, PrivateKey.generate(), passphrase)

    def import_seed(self, name: str, seed_hex: str, passphrase: str) -> KeyInfo:
        """An existing key from its 32-byte seed in hex, sealed under passphrase."""
        check_name(name)
        return self._store(name, PrivateKey(parse_seed_hex(seed_hex)), passphrase)

    def _store(self, name: str, key: PrivateKey, passphrase: str) -> KeyInfo:
        target = self.file_of(name)
        if not passphrase:
            raise KeystoreError("the passphrase must not be empty")
        if target.exists():  # checked again, atomically, by O_EXCL below
            raise KeyExists(f"a key named {name!r} already exists in {self.path}")
        address = key.address_text
        salt, nonce = os.urandom(SALT_LEN), os.urandom(NONCE_LEN)
        sealing_key = _derive(passphrase, salt, self.scrypt_n, SCRYPT_R, SCRYPT_P)
        ciphertext = ChaCha20Poly1305(sealing_key).encrypt(nonce, key.seed, _aad(name, address))
        doc = {
            "version": VERSION,
            "name": name,
            "address": address,
            "public_key": key.public_key.hex(),
            "kdf": KDF,
            "kdf_params": {"salt": salt.hex(), "n": self.scrypt_n, "r": SCRYPT_R,
                           "p": SCRYPT_P, "dklen": 32},
            "cipher": CIPHER,
            "nonce": nonce.hex(),
            "ciphertext": ciphertext.hex(),
        }
        self._ensure_dir()
        self._write_new(target, (json.dumps(doc, indent=2) + "\n").encode())
        return KeyInfo(name, address, key.public_key.hex(), target)

    def _ensure_dir(self) -> None:
        if self.path.is_dir():
            return
        if self.path.exists():
            raise KeystoreError(f"keystore path {self.path} exists and is not a directory")
        # Missing parents too (~/.muxer) are made private: they may later hold other wallet
        # state. (Path.mkdir(parents=True) would give them the default mode.) Directories
        # that already exist are left as they are.
        missing = [self.path]
        while not missing[-1].parent.exists():
            missing.append(missing[-1].parent)
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):  # made meanwhile by another wallet
                d.mkdir(mode=0o700)
                # mkdir's mode is filtered by the umask, which may drop owner bits.
                os.chmod(d, 0o700)

    def _write_new(self, target: Path, data: bytes) -> None:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyExists(f"a key named {target.stem!r} already exists in {self.path}") from None
        try:
            os.fchmod(fd, 0o600)  # the umask may have removed owner bits; never adds others'
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            # A half-written key file would block the name and unlock to nothing.
            with contextlib.suppress(OSError):
                target.unlink()
            raise
        os.close(fd)
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        # So that a crash right after "key created" cannot lose the directory entry.
        try:
            dfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass  # some filesystems refuse fsync on directories; the file itself is synced
        finally:
            os.close(dfd)

    # --- reading ------------------------------------------------------------------------

    def _load(self, name: str) -> dict[str, Any]:
        path = self.file_of(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise UnknownKey(f"no key named {name!r} in {self.path}") from None
        except OSError as exc:
            raise KeystoreError(f"cannot read {path}: {exc.strerror}") from None
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise CorruptKeyFile(f"{path} is not a valid key file (not JSON)") from None
        if not isinstance(doc, dict):
            raise CorruptKeyFile(f"{path} is not a valid key file (not a JSON object)")
        return doc

    def _info(self, name: str, doc: dict[str, Any]) -> KeyInfo:
        path = self.file_of(name)
        if doc.get("version") != VERSION:
            raise CorruptKeyFile(f"{path}: unsupported key file version {doc.get('version')!r}")
        if doc.get("name") != name:
            raise CorruptKeyFile(
                f"{path} holds the key named {str(doc.get('name'))[:40]!r}, not {name!r}"
            )
        address, public_key = doc.get("address"), doc.get("public_key")
        try:
            pub = bytes.fromhex(public_key) if isinstance(public_key, str) else b""
            addr = address_from_text(address if isinstance(address, str) else "")
        except (ValueError, AddressError):
            raise CorruptKeyFile(f"{path}: bad address or public key") from None
        if len(pub) != 32:
            raise CorruptKeyFile(f"{path}: the public key is not 32 bytes")
        return KeyInfo(name, address_to_text(addr), pub.hex(), path)

    def exists(self, name: str) -> bool:
        try:
            return self.file_of(name).is_file()
        except BadName:
            return False

    def show(self, name: str) -> KeyInfo:
        """The public part of a key; needs no passphrase."""
        return self._info(name, self._load(name))

    def list_keys(self) -> list[KeyInfo]:
        """Every key in the directory, by name. Files that are not named like keys are
        skipped; a key file that cannot be read raises, naming the file."""
        if not self.path.is_dir():
            return []
        out: list[KeyInfo] = []
        for entry in sorted(self.path.iterdir()):
            if entry.suffix != ".json" or _NAME.fullmatch(entry.stem) is None:
                continue
            out.append(self.show(entry.stem))
        return out

    def unlock(self, name: str, passphrase: str) -> PrivateKey:
        """The key, decrypted. WrongPassphrase if the passphrase (or the file) is wrong."""
        doc = self._load(name)
        info = self._info(name, doc)
        path = info.path
        if doc.get("kdf") != KDF or doc.get("cipher") != CIPHER:
            raise CorruptKeyFile(
                f"{path}: unsupported kdf/cipher {doc.get('kdf')!r}/{doc.get('cipher')!r}"
            )
        params = doc.get("kdf_params")
        if not isinstance(params, dict):
            raise CorruptKeyFile(f"{path}: kdf_params missing")
        n, r, p = params.get("n"), params.get("r"), params.get("p")
        if not (
            type(n) is int and 2 <= n <= MAX_SCRYPT_N and n & (n - 1) == 0
            and type(r) is int and 1 <= r <= MAX_SCRYPT_R
            and type(p) is int and 1 <= p <= MAX_SCRYPT_P
            and params.get("dklen", 32) == 32
        ):
            raise CorruptKeyFile(f"{path}: scrypt parameters out of bounds")
        try:
            salt = bytes.fromhex(params["salt"])
            nonce = bytes.fromhex(doc["nonce"])
            ciphertext = bytes.fromhex(doc["ciphertext"])
        except (KeyError, TypeError, ValueError):
            raise CorruptKeyFile(f"{path}: salt, nonce or ciphertext missing or not hex") from None
        if len(nonce) != NONCE_LEN or len(salt) < 8:
            raise CorruptKeyFile(f"{path}: bad nonce or salt length")
        sealing_key = _derive(passphrase, salt, n, r, p)
        try:
            seed = ChaCha20Poly1305(sealing_key).decrypt(
                nonce, ciphertext, _aad(name, info.address)
            )
        except InvalidTag:
            # The tag cannot tell a wrong passphrase from an edited file; the passphrase is
            # by far the likelier cause, so say that first.
            raise WrongPassphrase(
                f"wrong passphrase for key {name!r} (or its file {path} was modified)"
            ) from None
        if len(seed) != SEED_LEN:
            raise CorruptKeyFile(f"{path}: the sealed seed is not 32 bytes")
        key = PrivateKey(seed)
        if key.public_key.hex() != info.public_key:
            raise CorruptKeyFile(f"{path}: the public key does not match the sealed seed")
        return key


# --- reading secrets from the user ----------------------------------------------------------


def read_passphrase(name: str, *, confirm: bool) -> str:
    """The passphrase for key ``name``: MUXER_PASSPHRASE if set, else a hidden prompt
    (asked twice when ``confirm``, i.e. when creating a key)."""
    env = os.environ.get(ENV_PASSPHRASE)
    if env is not None:
        return env
    value: str = click.prompt(
        f"Passphrase for key {name!r}",
        hide_input=True,
        confirmation_prompt=confirm,
        err=True,  # prompts go to stderr so that stdout stays clean for --json
    )
    return value


def read_seed_hex() -> str:
    """The seed to import: MUXER_SEED if set, else a hidden prompt."""
    env = os.environ.get(ENV_SEED)
    if env is not None:
        return env
    value: str = click.prompt("Seed (64 hex digits)", hide_input=True, err=True)
    return value
