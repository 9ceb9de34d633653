"""Measured per-operator latencies, cached on disk per (target, CPU model, onnxruntime version, precision,
operator signature), so a second model with the same layer shapes costs nothing.

A table measured elsewhere (another CPU, another onnxruntime, another target setting) is never used
silently: a cache file whose identity does not match is re-measured with a warning, and an explicitly
given table file that does not match is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnxruntime as ort

from agmc_onnx.cost import TargetProfile
from agmc_onnx.errors import StaleTableError
from agmc_onnx.io import write_bytes_atomic
from agmc_onnx.layer_latency.signature import LayerSignature

__all__ = [
    "TableIdentity",
    "SignatureTable",
    "TableCache",
    "current_identity",
    "check_identity",
    "cpu_model",
    "default_table_dir",
]

log = logging.getLogger(__name__)
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class TableIdentity:
    """Everything besides the operator that changes a measured latency."""

    target: str
    provider: str
    intra_op_threads: int
    batch_size: int
    cpu: str
    onnxruntime: str
    precision: str
    format_version: int = _FORMAT_VERSION

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def mismatch(self, other: TableIdentity) -> str | None:
        """A sentence naming what differs, or None when both are the same."""
        diffs = [f"{k} {v!r} (here {getattr(self, k)!r})" for k, v in asdict(other).items() if getattr(self, k) != v]
        return "; ".join(diffs) or None


@dataclass
class SignatureTable:
    """Latency in ms of one operator signature at measured (c_in, c_out) points."""

    signature: LayerSignature
    entries: dict[tuple[int, int], float] = field(default_factory=dict)


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def current_identity(profile: TargetProfile, precision: str) -> TableIdentity:
    threads = profile.intra_op_threads or (os.cpu_count() or 1)
    return TableIdentity(
        profile.name, profile.provider, threads, profile.batch_size, cpu_model(), ort.__version__, precision
    )


def default_table_dir() -> Path:
    return Path.home() / ".cache" / "agmc-onnx" / "latency-tables"


def _signature_from_json(data: dict) -> LayerSignature:
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return LayerSignature(**values)


class TableCache:
    """Signature tables for one identity, read from and written to ``folder/<identity digest>/``."""

    def __init__(self, identity: TableIdentity, folder: str | os.PathLike | None = None) -> None:
        self.identity = identity
        self.folder = Path(folder) if folder is not None else default_table_dir()
        self._tables: dict[str, SignatureTable] = {}

    def _path(self, signature: LayerSignature) -> Path:
        return self.folder / self.identity.digest / f"{signature.digest}.json"

    def table(self, signature: LayerSignature) -> SignatureTable:
        key = signature.digest
        if key not in self._tables:
            self._tables[key] = self._read(signature)
        return self._tables[key]

    def _read(self, signature: LayerSignature) -> SignatureTable:
        path = self._path(signature)
        if not path.is_file():
            return SignatureTable(signature)
        try:
            data = json.loads(path.read_text())
            identity = TableIdentity(**data["identity"])
            stored = _signature_from_json(data["signature"])
            entries = {(int(ci), int(co)): float(ms) for ci, co, ms in data["entries"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("latency table %s is unreadable (%s); measuring again", path, exc)
            return SignatureTable(signature)
        difference = self.identity.mismatch(identity)
        if difference or stored != signature:
            log.warning("latency table %s was measured elsewhere (%s); measuring again", path,
                        difference or "another operator")
            return SignatureTable(signature)
        return SignatureTable(signature, entries)

    def save(self) -> None:
        for table in self._tables.values():
            if not table.entries:
                continue
            payload = {
                "identity": asdict(self.identity),
                "signature": asdict(table.signature),
                "entries": [[ci, co, ms] for (ci, co), ms in sorted(table.entries.items())],
            }
            write_bytes_atomic(self._path(table.signature), json.dumps(payload).encode())


def check_identity(expected: TableIdentity, found: TableIdentity, source: str) -> None:
    """Refuse a latency table measured under another identity."""
    difference = expected.mismatch(found)
    if difference:
        raise StaleTableError(
            f"{source} was measured under other conditions ({difference}); "
            "build a new one here with `agmc-onnx profile`"
        )
