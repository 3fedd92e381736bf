"""Which chains the evidence is kept in, from the settings: Redis for a Redis store, files when
`[evidence] directory` is set with the memory store, else this process's memory; and the key
that signs them (`[evidence] key_file`, else one made for this process alone)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.errors import ConfigError
from gateway.evidence.entries import EvidenceError
from gateway.evidence.files import FileChains
from gateway.evidence.log import Chains, EvidenceLog, SigningPolicy
from gateway.evidence.memory import MemoryChains
from gateway.evidence.redis_chains import RedisChains, signatures_to_keep
from gateway.evidence.signing import load_private_key

if TYPE_CHECKING:
    from gateway.settings import EvidenceSettings

DAY_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class EvidenceBackend:
    """The log and what it is kept in; `caveats` say, for the start-up log, what will not
    outlive this process."""

    log: EvidenceLog
    chains: Chains
    caveats: tuple[str, ...]

    async def aclose(self) -> None:
        if isinstance(self.chains, RedisChains):
            await self.chains.aclose()


def is_redis_url(store_url: str) -> bool:
    return urlsplit(store_url).scheme != "memory"


def open_evidence(
    settings: EvidenceSettings, store_url: str, *, create: bool = True
) -> EvidenceBackend:
    """The evidence log the settings describe (no I/O yet but checking the directory, made if
    missing unless `create` is False: an export only reads). ConfigError names a directory the
    gate must not use."""
    caveats = []
    chains: Chains
    if is_redis_url(store_url):
        retention = settings.retention_days * DAY_SECONDS
        chains = RedisChains.connect(
            store_url,
            retention_seconds=retention,
            max_entries=settings.max_entries,
            signatures_kept=signatures_to_keep(
                retention, settings.max_entries, settings.sign_every, settings.sign_seconds
            ),
        )
    elif settings.directory is not None:
        try:
            chains = FileChains(settings.directory, create=create)
        except EvidenceError as exc:
            # Said at start, as the settings' problems are: the gate does not start with it.
            raise ConfigError([f"[evidence] directory: {exc}"]) from None
    else:
        chains = MemoryChains()
        caveats.append(
            "the evidence log is kept in memory: it will not outlive this process (set"
            " [evidence] directory, or use the Redis store)"
        )
    if settings.private_pem is not None:
        key = load_private_key(settings.private_pem)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        caveats.append(
            "no [evidence] key_file: the evidence log is signed with a key made for this process"
            " alone, whose fingerprint nobody can publish (`meetgate evidence key --generate`)"
        )
    policy = SigningPolicy(every=settings.sign_every, seconds=settings.sign_seconds)
    return EvidenceBackend(EvidenceLog(chains, key, policy), chains, tuple(caveats))
