"""Files of the JSON-directory store: atomic writes, and ledgers as a journal plus sorted segments.

A *unit* is one task's ledger of one kind (items or boundary) in a directory of its own::

    meta.json                    counts, the journal's name and committed length, the segment list
    journal-000004-9c1e2a.jsonl  entries in commit order, one JSON object a line; only the first
                                 ``journal_bytes`` bytes (per meta.json) are committed, the rest is ignored
    seg-000003-51ab0f.jsonl      entries sorted by item ID, one line per ID, never modified
    seg-000003-51ab0f.idx.json   that segment's sparse index: every 32nd ID, its byte offset, a CRC-32 of
                                 each 32-line block, the file's size, and a filter (16 bits per ID, one
                                 hash) that rules out ~94% of the IDs the segment does not hold

A line is ``{"error":null,"id":"A-17","ok":true,"retryable":false}`` (sorted keys), so ``jq`` reads every
file. A lookup reads the journal (at most ``journal_limit`` entries plus one commit, cached and kept in
step with meta.json) and then, per segment from newest to oldest, asks the filter, bisects the in-memory
sparse index and searches one ~3 KB block, whose CRC it checks once per process: a few microseconds per
ID and segment, whatever the ledger's size. Opening a store or a run reads none of this.

Compaction (when the journal holds ``journal_limit`` entries) merges the journal with the newest segments
whose combined size it reaches — a binary counter, so there are O(log n) segments and each entry is
rewritten O(log n) times — into one new segment. It is crash safe by order: the new segment and its index
are written, fsynced and renamed into place; then meta.json is atomically switched to them (the commit
point); then the replaced files are deleted. A crash before the switch leaves unreferenced files that the
next compaction of the unit sweeps away; a crash after it leaves files nobody references.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import errno
import json
import mmap
import os
import secrets
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from syncpoint import codec
from syncpoint.errors import CorruptState, SchemaTooNew, StoreError, StoreUnavailable
from syncpoint.files import fsync_dir
from syncpoint.stores.base import ItemOutcome

FORMAT = 1
BLOCK = 32  # lines per indexed block of a segment
META = "meta.json"

Value = tuple[int, str | None]  # (ItemOutcome value, error text)
T = TypeVar("T")

_ID_KEY = ',"id":"'
_OK_KEY = ',"ok":'
_OK_PREFIX = b'{"error":null,"id":"'  # 20 bytes
_OK_KEY_BYTES = b',"ok":'
_LINE = '{{"error":{},"id":{},"ok":{},"retryable":{}}}\n'
_scanstring: Any = getattr(json.decoder, "scanstring")  # noqa: B009 - untyped C helper
_encode_str: Any = getattr(json.encoder, "encode_basestring")  # noqa: B009 - what ensure_ascii=False uses
_decode = json.JSONDecoder().decode


# -- errors ------------------------------------------------------------------------------------------
def corrupt(where: object, detail: str) -> CorruptState:
    detail = " ".join(detail.split())
    return CorruptState(
        f"checkpoint state in {where} is corrupt ({detail}); it was left untouched: "
        "move it aside to start over, or restore it from a backup"
    )


def os_error(exc: OSError, path: object, doing: str = "write") -> StoreError:
    """One clear line naming the file, for an OSError met while reading or writing the store."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreUnavailable(f"cannot {doing} {path}: {reason}; make the checkpoint directory writable")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StoreError(f"cannot {doing} {path}: {reason}; free some space and resume")
    if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.ENOENT):
        return StoreUnavailable(f"cannot {doing} {path}: {reason}; check the checkpoint directory")
    return StoreError(f"cannot {doing} {path}: {reason}")


# -- atomic file operations (directory fsyncs: ``syncpoint.files``) -----------------------------------
def write_temp(path: Path, data: bytes) -> Path:
    """Write ``data`` to a fresh temp file beside ``path`` and fsync it; the caller renames it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        _write_all(fd, data, 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        remove(tmp)
        raise
    os.close(fd)
    return tmp


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, ``os.replace``, fsync the directory."""
    tmp = write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise
    fsync_dir(path.parent)


def append_at(path: Path, offset: int, data: bytes) -> bool:
    """Write ``data`` at ``offset``, dropping anything after it (a torn or uncommitted tail); fsync.

    Idempotent, so an intent can be replayed. Returns whether the file was created (its directory then
    needs an fsync). A file shorter than ``offset`` lost committed bytes: that is corruption.
    """
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size < offset:
            raise corrupt(path, f"{size} bytes but {offset} were committed")
        if size > offset:
            os.ftruncate(fd, offset)
        _write_all(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return created


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def read_bytes(path: Path) -> bytes | None:
    """A file's bytes, or None if it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        raise corrupt(path, "a directory where a file belongs") from exc
    except OSError as exc:
        raise os_error(exc, path, "read") from None


def pretty(doc: object) -> bytes:
    """The form of every JSON document the store writes: indented, sorted keys, UTF-8, final newline."""
    text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


# -- entries -----------------------------------------------------------------------------------------
def entry_line(item_id: str, outcome: int, error: str | None) -> bytes:
    """``codec.dumps`` of the entry (sorted keys, compact, UTF-8) plus a newline, built directly: a
    ledger writes millions of these."""
    return _LINE.format(
        "null" if error is None else _encode_str(error), _encode_str(item_id),
        "true" if outcome == ItemOutcome.OK else "false",
        "true" if outcome == ItemOutcome.FAILED_RETRYABLE else "false",
    ).encode("utf-8")


def parse_entry(line: bytes, where: object) -> tuple[str, Value]:
    try:
        data = _decode(line.decode("utf-8"))
    except ValueError:
        data = codec.decode_or_corrupt(line, str(where))  # raises the one-line CorruptState
    return _entry_of(data, where)


def _entry_of(data: Any, where: object) -> tuple[str, Value]:
    if not isinstance(data, dict):
        raise corrupt(where, f"ledger line is not an object: {str(data)[:80]!r}")
    item, ok, error, retryable = data.get("id"), data.get("ok"), data.get("error"), data.get("retryable")
    if not (isinstance(item, str) and isinstance(ok, bool) and isinstance(retryable, bool)
            and (error is None or isinstance(error, str))):
        raise corrupt(where, f"bad ledger line {codec.dumps(data)[:80]!r}")
    outcome = ItemOutcome.OK if ok else ItemOutcome.FAILED_RETRYABLE if retryable else ItemOutcome.FAILED_PERMANENT
    return item, (int(outcome), error)


def parse_entries(data: bytes, where: object) -> Iterator[tuple[str, Value]]:
    """Parse many lines at once: as one JSON array (raw newlines only separate lines: JSON escapes them
    inside strings), falling back to line by line to name the bad line."""
    try:
        docs = _decode("[" + data.decode("utf-8").rstrip("\n").replace("\n", ",") + "]")
    except ValueError:
        docs = None
    if docs is None or len(docs) != data.count(b"\n"):
        return (parse_entry(line, where) for line in data.splitlines())
    return (_entry_of(doc, where) for doc in docs)


def line_id(line: bytes, where: object) -> str:
    """The item ID of a segment line without parsing all of it (the ``,"id":`` key cannot occur inside
    a JSON string, where every quote is escaped)."""
    if line.startswith(_OK_PREFIX):  # the common case: no error, and an ID that JSON did not escape
        end = line.find(b'"', 20)
        raw = line[20:end]
        if line.startswith(_OK_KEY_BYTES, end + 1) and b"\\" not in raw:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                pass
    try:
        text = line.decode("utf-8")
        start = text.index(_ID_KEY) + len(_ID_KEY)
        item, end = _scanstring(text, start)
        if text.startswith(_OK_KEY, end):
            return str(item)
    except ValueError:
        pass
    raise corrupt(where, f"bad ledger line {line[:80]!r}")


# -- meta --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentInfo:
    file: str
    entries: int
    bytes: int

    @property
    def index(self) -> str:
        return self.file.removesuffix(".jsonl") + ".idx.json"


@dataclass(frozen=True)
class Meta:
    run_id: str
    task: str
    kind: str
    ok: int = 0
    failed: int = 0
    journal: str = ""
    journal_bytes: int = 0
    journal_entries: int = 0
    segments: tuple[SegmentInfo, ...] = ()
    serial: int = 0

    def named(self, prefix: str) -> tuple[str, Meta]:
        """A fresh file name in this unit, and the meta that remembers it was handed out."""
        serial = self.serial + 1
        return f"{prefix}-{serial:06d}-{secrets.token_hex(3)}.jsonl", replace(self, serial=serial)

    def fresh(self) -> Meta:
        """An empty ledger (after a clear) with a new journal name."""
        empty = Meta(self.run_id, self.task, self.kind, serial=self.serial)
        name, empty = empty.named("journal")
        return replace(empty, journal=name)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "run_id": self.run_id, "task": self.task, "kind": self.kind,
            "ok": self.ok, "failed": self.failed, "journal": self.journal,
            "journal_bytes": self.journal_bytes, "journal_entries": self.journal_entries,
            "segments": [{"file": s.file, "entries": s.entries, "bytes": s.bytes} for s in self.segments],
            "serial": self.serial,
        }

    @classmethod
    def from_json(cls, data: object, where: object) -> Meta:
        try:
            assert isinstance(data, dict), "not an object"
            if _int(data.get("format", FORMAT)) > FORMAT:
                raise SchemaTooNew(f"{where} was written by a newer syncpoint; upgrade syncpoint")
            segments = tuple(
                SegmentInfo(_name(s["file"]), _int(s["entries"]), _int(s["bytes"])) for s in data["segments"]
            )
            return cls(
                run_id=_str(data["run_id"]), task=_str(data["task"]), kind=_str(data["kind"]),
                ok=_int(data["ok"]), failed=_int(data["failed"]), journal=_name(data["journal"]),
                journal_bytes=_int(data["journal_bytes"]), journal_entries=_int(data["journal_entries"]),
                segments=segments, serial=_int(data["serial"]),
            )
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            raise corrupt(where, f"bad ledger metadata: {exc!r}") from None


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"expected a non-negative integer, got {value!r}")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _name(value: object) -> str:
    name = _str(value)
    if "/" in name or name.startswith("."):
        raise ValueError(f"bad file name {name!r}")
    return name


# -- segments ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentIndex:
    keys: list[str]
    offsets: list[int]
    crcs: list[int]
    size: int
    filter: bytes = b""  # one bit per hash(ID) % filter_bits, set for every ID in the segment
    verified: bytearray = field(default_factory=bytearray)  # blocks whose CRC this process has checked

    def to_json(self, entries: int) -> dict[str, Any]:
        return {"format": FORMAT, "block": BLOCK, "bytes": self.size, "entries": entries,
                "keys": self.keys, "offsets": self.offsets, "crcs": self.crcs,
                "filter": base64.b64encode(self.filter).decode("ascii"), "filter_crc": zlib.crc32(self.filter)}


def id_hash(item: str) -> int:
    """The hash of an ID for segment filters (stable across processes, unlike ``hash()``)."""
    return zlib.crc32(item.encode("utf-8", "surrogatepass"))


class IndexCache:
    """Parsed sparse indexes of immutable segment files (their names are never reused), LRU-bounded."""

    def __init__(self, limit: int = 256) -> None:
        self._limit = limit
        self._cache: OrderedDict[Path, SegmentIndex] = OrderedDict()

    def get(self, path: Path, info: SegmentInfo) -> SegmentIndex:
        found = self._cache.get(path)
        if found is None:
            found = self._load(path.with_name(info.index), info)
            self._cache[path] = found
            if len(self._cache) > self._limit:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(path)
        return found

    @staticmethod
    def _load(path: Path, info: SegmentInfo) -> SegmentIndex:
        raw = read_bytes(path)
        if raw is None:
            raise corrupt(path, "the segment index is missing")
        data = codec.decode_or_corrupt(raw, str(path))
        try:
            bits = base64.b64decode(data["filter"], validate=True)
            if zlib.crc32(bits) != data["filter_crc"] or not bits:
                raise ValueError("filter checksum mismatch")
            index = SegmentIndex(list(data["keys"]), list(data["offsets"]), list(data["crcs"]), data["bytes"], bits)
            sizes_ok = len(index.keys) == len(index.offsets) == len(index.crcs) == -(-info.entries // BLOCK)
            sizes_ok = sizes_ok and (info.entries == 0) == (index.size == 0)
            if not sizes_ok or index.size != info.bytes or data["entries"] != info.entries:
                raise ValueError("does not match its segment")
            if not all(isinstance(k, str) for k in index.keys) or (index.offsets and index.offsets[0] != 0):
                raise ValueError("bad keys or offsets")
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise corrupt(path, f"bad segment index: {exc!r}") from None
        return index


def segment_lookup(path: Path, index: SegmentIndex, ids: list[tuple[str, int]]) -> dict[str, Value]:
    """Look IDs up in one segment: skip those its filter rules out, bisect the sparse index for the
    others and search one CRC-checked block for the ID's ``pattern()``. ``ids`` are (ID, ``id_hash``)
    pairs, sorted (neighbouring IDs share blocks)."""
    found: dict[str, Value] = {}
    bits, nbits = index.filter, len(index.filter) * 8
    ids = [probe for probe in ids if bits[probe[1] % nbits >> 3] & (1 << (probe[1] % nbits & 7))]
    if not ids:
        return found
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; mmap needs the descriptor
    except FileNotFoundError:
        raise corrupt(path, "the segment file is missing") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size != index.size:
            raise corrupt(path, f"size {size}, expected {index.size}")
        if size == 0:
            return found
        keys, offsets, verified = index.keys, index.offsets, index.verified
        if not verified:
            verified.extend(bytes(len(keys)))
        last_block = len(keys) - 1
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for item, _ in ids:
                number = bisect.bisect_right(keys, item) - 1
                if number < 0:
                    continue
                start = offsets[number]
                end = offsets[number + 1] if number < last_block else size
                if not verified[number]:
                    if zlib.crc32(mm[start:end]) != index.crcs[number]:
                        raise corrupt(path, f"checksum mismatch in the block at byte {start}")
                    verified[number] = 1
                hit = mm.find(pattern(item), start, end)
                if hit >= 0:
                    line_start = max(mm.rfind(b"\n", start, hit) + 1, start)
                    key, value = parse_entry(mm[line_start : mm.find(b"\n", hit, end)], path)
                    if key != item:
                        raise corrupt(path, f"line at byte {line_start} does not hold {item!r}")
                    found[item] = value
    return found


def pattern(item: str) -> bytes:
    """The bytes that identify ``item``'s line in a segment (unambiguous: see ``line_id``)."""
    return (_ID_KEY[:-1] + str(_encode_str(item)) + _OK_KEY).encode("utf-8")


def segment_lines(f: BinaryIO, path: Path, index: SegmentIndex) -> Iterator[tuple[str, bytes]]:
    """Stream a segment's lines (ID, raw line) block by block, checking size, CRCs and order."""
    if os.fstat(f.fileno()).st_size != index.size:
        raise corrupt(path, f"size {os.fstat(f.fileno()).st_size}, expected {index.size}")
    ends = [*index.offsets[1:], index.size]
    last: str | None = None
    for number, start in enumerate(index.offsets):
        block = f.read(ends[number] - start)
        if zlib.crc32(block) != index.crcs[number] or not block.endswith(b"\n"):
            raise corrupt(path, f"checksum mismatch in the block at byte {start}")
        for line in block.splitlines(keepends=True):
            item = line_id(line, path)
            if last is not None and item <= last:
                raise corrupt(path, f"lines out of order in the block at byte {start}")
            last = item
            yield item, line


def write_segment(path: Path, lines: Iterator[tuple[str, bytes]], expected: int) -> SegmentInfo:
    """Write sorted ``lines`` (at most ``expected``) and their index under temp names, fsync both, rename
    them into place. The filter has 16 bits per expected ID: it rules out ~94% of absent IDs."""
    nbits = max(64, 16 * expected)
    bits = bytearray(nbits // 8)
    index = SegmentIndex([], [], [], 0)
    block: list[bytes] = []
    count = 0
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        with open(tmp, "wb", buffering=1 << 20) as f:

            def flush() -> None:
                data = b"".join(block)
                index.offsets.append(f.tell())
                index.crcs.append(zlib.crc32(data))
                f.write(data)
                block.clear()

            for item, line in lines:
                if not block:
                    index.keys.append(item)
                block.append(line)
                count += 1
                bit = zlib.crc32(item.encode("utf-8", "surrogatepass")) % nbits
                bits[bit >> 3] |= 1 << (bit & 7)
                if len(block) == BLOCK:
                    flush()
            if block:
                flush()
            f.flush()
            size = f.tell()
            os.fsync(f.fileno())
        if count > expected:
            raise ValueError(f"{count} entries, more than the {expected} expected")
        info = SegmentInfo(path.name, count, size)
        index = replace(index, size=size, filter=bytes(bits))
        idx_tmp = write_temp(path.with_name(info.index), codec.dumps(index.to_json(count)).encode() + b"\n")
        os.replace(idx_tmp, path.with_name(info.index))
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise
    return info


def merge(sources: list[Iterator[tuple[str, T]]]) -> Iterator[tuple[str, T]]:
    """Merge sorted sources (oldest first); an ID in several takes the newest source's payload."""
    merged = sources[0]
    for newer in sources[1:]:
        merged = _merge2(merged, newer)
    return merged


def _merge2(older: Iterator[tuple[str, T]], newer: Iterator[tuple[str, T]]) -> Iterator[tuple[str, T]]:
    a, b = next(older, None), next(newer, None)
    while a is not None and b is not None:
        if a[0] < b[0]:
            yield a
            a = next(older, None)
        elif b[0] < a[0]:
            yield b
            b = next(newer, None)
        else:
            yield b
            a, b = next(older, None), next(newer, None)
    if a is not None:
        yield a
        yield from older
    if b is not None:
        yield b
        yield from newer


# -- one ledger unit ---------------------------------------------------------------------------------
class LedgerUnit:
    """One task's ledger of one kind; keeps its journal in memory, in step with meta.json."""

    def __init__(self, path: Path, indexes: IndexCache) -> None:
        self.path = path
        self._indexes = indexes
        self._journal_name = ""
        self._loaded = 0
        self._journal: dict[str, Value] = {}

    def read_meta(self) -> Meta | None:
        raw = read_bytes(self.path / META)
        if raw is None:
            return None
        return Meta.from_json(codec.decode_or_corrupt(raw, str(self.path / META)), self.path / META)

    def journal(self, meta: Meta) -> dict[str, Value]:
        """The committed journal as ID → latest value (reads only what was appended since last time)."""
        if self._journal_name != meta.journal or self._loaded > meta.journal_bytes:
            self._journal_name, self._loaded, self._journal = meta.journal, 0, {}
        if self._loaded < meta.journal_bytes:
            path = self.path / meta.journal
            try:
                with open(path, "rb") as f:
                    f.seek(self._loaded)
                    data = f.read(meta.journal_bytes - self._loaded)
            except FileNotFoundError:
                raise corrupt(path, "the journal is missing") from None
            except OSError as exc:
                raise os_error(exc, path, "read") from None
            if len(data) != meta.journal_bytes - self._loaded or not data.endswith(b"\n"):
                raise corrupt(path, f"shorter than the {meta.journal_bytes} committed bytes")
            self._journal.update(parse_entries(data, path))
            self._loaded = meta.journal_bytes
        return self._journal

    def note_append(self, old: Meta, new: Meta, entries: dict[str, Value]) -> None:
        """After a commit appended ``entries``: update the cached journal instead of re-reading it."""
        if self._journal_name == old.journal == new.journal and self._loaded == old.journal_bytes:
            self._journal.update(entries)
            self._loaded = new.journal_bytes
        else:
            self._journal_name, self._loaded, self._journal = "", 0, {}

    def lookup(self, meta: Meta, ids: Iterable[str]) -> dict[str, Value]:
        journal = self.journal(meta)
        found: dict[str, Value] = {}
        missing: list[str] = []
        for item in ids:
            value = journal.get(item)
            if value is None:
                missing.append(item)
            else:
                found[item] = value
        probes = [(item, id_hash(item)) for item in sorted(missing)] if meta.segments else []
        for info in reversed(meta.segments):
            if not probes:
                break
            path = self.path / info.file
            hits = segment_lookup(path, self._indexes.get(path, info), probes)
            found.update(hits)
            if hits:
                probes = [probe for probe in probes if probe[0] not in hits]
        return found

    def snapshot(self, meta: Meta) -> Snapshot:
        """Everything committed now, to stream after the store's lock is released."""
        items = sorted(self.journal(meta).items())
        files: list[tuple[BinaryIO, Path, SegmentIndex]] = []
        try:
            for info in meta.segments:
                path = self.path / info.file
                index = self._indexes.get(path, info)
                files.append((open(path, "rb"), path, index))  # noqa: SIM115 - the snapshot closes them
        except FileNotFoundError as exc:
            Snapshot(items, files).close()
            raise corrupt(exc.filename, "the segment file is missing") from None
        return Snapshot(items, files)

    def compact(self, meta: Meta) -> Meta:
        """Fold the journal and the newest segments it has outgrown into one segment; switch meta.json."""
        journal = self.journal(meta)
        segments = list(meta.segments)
        total, keep = len(journal), len(segments)
        while keep > 0 and segments[keep - 1].entries <= total:
            keep -= 1
            total += segments[keep].entries
        opened: list[BinaryIO] = []
        try:
            sources: list[Iterator[tuple[str, bytes]]] = []
            for info in segments[keep:]:
                path = self.path / info.file
                opened.append(open(path, "rb"))  # noqa: SIM115 - closed in finally
                sources.append(segment_lines(opened[-1], path, self._indexes.get(path, info)))
            sources.append((k, entry_line(k, *v)) for k, v in sorted(journal.items()))
            name, meta = meta.named("seg")
            merged = write_segment(self.path / name, merge(sources), total)
        finally:
            for f in opened:
                f.close()
        fsync_dir(self.path)
        journal_name, meta = meta.named("journal")
        new = replace(meta, journal=journal_name, journal_bytes=0, journal_entries=0,
                      segments=(*segments[:keep], merged))
        write_atomic(self.path / META, pretty(new.to_json()))
        self._journal_name, self._loaded, self._journal = new.journal, 0, {}
        self.sweep(new)
        return new

    def sweep(self, meta: Meta) -> None:
        """Delete files meta.json does not reference (replaced journals and segments, crash leftovers)."""
        keep = {META, meta.journal, *(s.file for s in meta.segments), *(s.index for s in meta.segments)}
        removed = False
        for entry in os.scandir(self.path):
            if entry.name not in keep:
                remove(Path(entry.path))
                removed = True
        if removed:
            fsync_dir(self.path)


class Snapshot:
    """A unit's committed entries at one moment: the journal copied, the segment files held open."""

    def __init__(self, journal: list[tuple[str, Value]], files: list[tuple[BinaryIO, Path, SegmentIndex]]):
        self._journal = journal
        self._files = files

    def entries(self) -> Iterator[tuple[str, Value]]:
        """Every ID once, in ID order, with its newest value."""
        sources = [_parsed(segment_lines(f, path, index), path) for f, path, index in self._files]
        sources.append(iter(self._journal))
        return merge(sources)

    def close(self) -> None:
        for f, _, _ in self._files:
            f.close()
        self._files = []


def _parsed(lines: Iterator[tuple[str, bytes]], path: Path) -> Iterator[tuple[str, Value]]:
    for item, line in lines:
        yield item, parse_entry(line, path)[1]
