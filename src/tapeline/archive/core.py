"""The archive as one object: config, index, vault and signing key, built from the config file."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tapeline.archive.crypto import load_archive_key, load_signing_key
from tapeline.archive.db import Index
from tapeline.archive.objects import LocalObjectStore, ObjectStore
from tapeline.archive.replica import ReplicatedStore
from tapeline.archive.retention import load_templates
from tapeline.archive.vault import Vault
from tapeline.config import Config
from tapeline.errors import ConfigError, StorageError


@dataclass(slots=True)
class Archive:
    """Everything that reads or writes records."""

    config: Config
    index: Index
    vault: Vault
    signing_key: Ed25519PrivateKey

    @property
    def node_id(self) -> str:
        """This node's id (`node.id`)."""
        return self.config.node.id

    @property
    def storage_mode(self) -> str:
        """`audit-trail` for a local disk (never called WORM); `worm-external:<bucket>` on S3."""
        return self.vault.store.mode

    @classmethod
    def open(cls, config: Config, *, migrate: bool = True) -> Archive:
        """Open keys, object store and index as configured.

        Raises:
            StorageError: a key file or the index cannot be used.
            ConfigError: the default retention class is unknown, or the S3 bucket lacks
                Object Lock or versioning (exit 78).
        """
        check_semantics(config)
        # A missing or unreadable key is a configuration problem (exit 78, no restart loop).
        try:
            archive_key = load_archive_key(config.storage.key_file)
        except StorageError as exc:
            raise ConfigError("config", "storage.key_file", str(exc)) from exc
        try:
            signing_key = load_signing_key(config.node.signing_key_file)
        except StorageError as exc:
            raise ConfigError("config", "node.signing_key_file", str(exc)) from exc
        store = open_store(config)
        index = Index.open(config.database.url, run_migrations=migrate)
        return cls(
            config=config, index=index, vault=Vault(store, archive_key), signing_key=signing_key
        )

    def close(self) -> None:
        """Release the index connections."""
        self.index.dispose()


def check_semantics(config: Config, *, source: str = "config") -> None:
    """Checks that need more than one key or the archive's own tables.

    Raises:
        ConfigError: naming the key.
    """
    if config.storage.backend == "s3" and not config.storage.s3_bucket:
        raise ConfigError(source, "storage.s3_bucket", 'required when storage.backend = "s3"')
    if config.storage.replica_bucket and config.storage.backend != "s3":
        raise ConfigError(source, "storage.replica_bucket", 'needs storage.backend = "s3"')
    if config.storage.replica_bucket and config.storage.replica_path:
        raise ConfigError(source, "storage.replica_path", "give one replica, not two")
    known = set(load_templates()) | {c.name for c in config.retention.classes}
    if config.retention.default_class not in known:
        names = ", ".join(sorted(known))
        raise ConfigError(source, "retention.default_class", f"unknown class (known: {names})")
    for n, policy in enumerate(config.retention.policies):
        if policy.retention_class not in known:
            key = f"retention.policies.{n}.retention_class"
            raise ConfigError(source, key, f"unknown class {policy.retention_class!r}")


def open_store(config: Config, *, source: str = "config") -> ObjectStore:
    """The object store `storage.backend` names.

    Raises:
        ConfigError: an S3 key is missing, or the bucket lacks Object Lock or versioning.
        StorageError: the S3 endpoint cannot be reached.
    """
    storage = config.storage
    primary: ObjectStore
    if storage.backend == "s3":
        from tapeline.archive.s3store import S3ObjectStore  # noqa: PLC0415  # boto3 only if used

        primary = S3ObjectStore.from_config(storage, source=source)
        if storage.replica_bucket is not None:
            replica = S3ObjectStore.from_config(
                storage.model_copy(update={"s3_bucket": storage.replica_bucket}), source=source
            )
            return ReplicatedStore(primary, replica)
    else:
        primary = LocalObjectStore(storage.path, min_free_bytes=storage.min_free_bytes)
    if storage.replica_path is not None:
        local = LocalObjectStore(storage.replica_path, min_free_bytes=storage.min_free_bytes)
        return ReplicatedStore(primary, local)
    return primary
