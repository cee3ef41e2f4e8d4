"""API keys for `videopoet serve`: a JSON file of names and SHA-256 hashes (the keys themselves are
printed once, by `videopoet serve keys add NAME`, and never stored)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from pathlib import Path

from videopoet.errors import UserError

PREFIX = "vp_"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def hash_key(key: str) -> str:
    """The stored form of a key: hex SHA-256 (keys are 256 random bits, so no salt or stretching is needed)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"keys file {path} not found; make one with `videopoet serve keys add NAME --keys {path}`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"keys file {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise UserError(f"keys file {path} has no \"keys\" list (write it with `videopoet serve keys add`)")
    return data


def add_key(path: str | Path, name: str) -> str:
    """Add a key called `name` to the keys file (created if missing, written atomically, mode 600) and
    return the new key; it is not stored and cannot be shown again."""
    path = Path(path)
    if not _NAME.match(name):
        raise UserError(f"key name {name!r} must be 1-64 letters, digits or _ . @ -")
    data = _read(path) if path.exists() else {"keys": []}
    if any(k.get("name") == name for k in data["keys"]):
        raise UserError(f"{path} already has a key named {name!r}")
    key = PREFIX + secrets.token_urlsafe(32)
    data["keys"].append({"name": name, "sha256": hash_key(key), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return key


class KeyStore:
    """The keys of a keys file, by hash; `name_of(key)` is the key's name or None."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        data = _read(self.path)
        self._by_hash = {}
        for entry in data["keys"]:
            if not isinstance(entry, dict) or not entry.get("name") or not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256", ""))):
                raise UserError(f"keys file {self.path}: every entry needs a name and a sha256 hex digest, got {entry!r}")
            self._by_hash[entry["sha256"]] = entry["name"]
        if not self._by_hash:
            raise UserError(f"keys file {self.path} holds no keys; add one with `videopoet serve keys add NAME --keys {self.path}`")

    def __len__(self) -> int:
        return len(self._by_hash)

    def name_of(self, key: str | None) -> str | None:
        """The name of `key`, or None for a missing or unknown key (compared in constant time)."""
        if not key:
            return None
        digest = hash_key(key)
        for stored, name in self._by_hash.items():
            if hmac.compare_digest(stored, digest):
                return name
        return None
