"""``dockyard export`` and ``dockyard import``: the stores as JSON lines, to change backends.

An operator moving from the embedded default to MongoDB runs ``dockyard export`` against the
old configuration and ``dockyard import`` against the new one (``DOCKYARD_STORE=mongodb``). The
records are those of the stores' ports (``dump``/``load``, services.core.dump), so any adapter
reads what any other wrote.

The file: a header line ``{"dockyard_export": 1, "stores": [...]}``, then one line per record,
``{"store": "auth", "kind": "user", "record": {...}}``. It holds password and token hashes.

An import refuses a store that is not empty, and checks every line before it writes anything
(the input is spooled to a private temporary file, so stdin can be read twice). The auth and
directory stores are each written in one transaction; the catalog and the activity log, which
can be large, in batches, so an import that fails part-way leaves them partly filled (empty them
and import again).

The directory store is exported beside the auth store because nothing else holds what it holds:
which accounts are linked to an LDAP entry or an OIDC/GitHub subject, and which memberships the
group sync made. Without it an OIDC user signing in after the move would be refused
(``account_conflict``: a local account of that name exists, linked to nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from services.auth.app import open_auth_store
from services.auth.directory_app import open_directory_store
from services.auth.ports import AUTH_RECORDS, DIRECTORY_RECORDS
from services.core.config import Config, load_config
from services.core.dump import Dumped, RecordSpec, check
from services.core.errors import Conflict, Invalid
from services.ingest.app import open_stores
from services.ingest.ports import ACTIVITY_RECORDS, CATALOG_RECORDS

__all__ = ["FORMAT_VERSION", "STORES", "add_commands", "export_stores", "import_stores"]

FORMAT_VERSION = 1
SPECS: dict[str, RecordSpec] = {
    "auth": AUTH_RECORDS,
    "directory": DIRECTORY_RECORDS,
    "catalog": CATALOG_RECORDS,
    "activity": ACTIVITY_RECORDS,
}
STORES = tuple(SPECS)
# Stores loaded in one call (one transaction); the others in batches of BATCH records.
WHOLE = frozenset({"auth", "directory"})
BATCH = 1000


class Transferable(Protocol):
    def dump(self) -> AsyncIterator[Dumped]: ...

    async def is_empty(self) -> bool: ...

    async def load(self, records: Sequence[Dumped]) -> None: ...


@asynccontextmanager
async def _opened(config: Config, names: Sequence[str]) -> AsyncIterator[dict[str, Transferable]]:
    async with AsyncExitStack() as stack:
        stores: dict[str, Transferable] = {}
        if "auth" in names:
            stores["auth"] = await stack.enter_async_context(open_auth_store(config))
        if "directory" in names:
            stores["directory"] = await stack.enter_async_context(open_directory_store(config))
        if {"catalog", "activity"} & set(names):
            catalog, activity = await stack.enter_async_context(open_stores(config))
            stores |= {"catalog": catalog, "activity": activity}
        yield stores


async def export_stores(config: Config, out: IO[str], names: Sequence[str]) -> dict[str, int]:
    """Write the header and every record of the stores ``names``; returns records per store."""
    counts = dict.fromkeys(names, 0)
    async with _opened(config, names) as stores:
        out.write(json.dumps({"dockyard_export": FORMAT_VERSION, "stores": list(names)}) + "\n")
        for name in names:
            async for kind, fields in stores[name].dump():
                out.write(json.dumps({"store": name, "kind": kind, "record": fields},
                                     separators=(",", ":")) + "\n")
                counts[name] += 1
    out.flush()
    return counts


async def import_stores(config: Config, source: IO[str]) -> dict[str, int]:
    """Check the whole export, then load it into the (empty) stores; returns records per store."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:  # created private (0600)
        names, counts = _checked(source, spool)
        spool.seek(0)
        spool.readline()  # the header
        async with _opened(config, names) as stores:
            for name in names:
                if not await stores[name].is_empty():
                    raise Conflict("store_not_empty", f"the {name} store of this configuration"
                                   f" ({config.store.backend}) already holds data; import into"
                                   " empty stores only")
            await _load(stores, spool)
    return counts


def _checked(source: IO[str], spool: IO[str]) -> tuple[list[str], dict[str, int]]:
    """Every line checked and copied to ``spool``; the stores named and their record counts."""
    header = source.readline()
    try:
        head = json.loads(header)
    except ValueError:
        head = None
    if not isinstance(head, dict) or head.get("dockyard_export") != FORMAT_VERSION:
        raise Invalid("bad_export", "line 1: not a Dockyard export (expected the header"
                      f' {{"dockyard_export": {FORMAT_VERSION}, ...}} that dockyard export writes)')
    spool.write(header)
    counts: dict[str, int] = {}
    for number, line in enumerate(source, start=2):
        problem = _problem(line, counts)
        if problem:
            raise Invalid("bad_export", f"line {number}: {problem}; nothing was imported")
        spool.write(line)
    return list(counts), counts


def _problem(line: str, counts: dict[str, int]) -> str | None:
    try:
        entry = json.loads(line)
    except ValueError as exc:
        return f"not JSON ({exc})"
    if not isinstance(entry, dict) or entry.keys() != {"store", "kind", "record"}:
        return 'expected {"store": ..., "kind": ..., "record": {...}}'
    store, kind = entry["store"], entry["kind"]
    if store not in SPECS:
        return f"unknown store {store!r} (expected one of {', '.join(STORES)})"
    problem = check(SPECS[store], str(kind), entry["record"])
    if problem is None:
        counts[store] = counts.get(store, 0) + 1
    return problem


async def _load(stores: dict[str, Transferable], spool: IO[str]) -> None:
    batch: list[Dumped] = []
    batch_store = ""
    for line in spool:
        entry: dict[str, Any] = json.loads(line)
        store = entry["store"]
        if batch and (store != batch_store or (store not in WHOLE and len(batch) >= BATCH)):
            await stores[batch_store].load(batch)
            batch = []
        batch_store = store
        batch.append((entry["kind"], entry["record"]))
    if batch:
        await stores[batch_store].load(batch)


# -- the commands ------------------------------------------------------------------------------


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export", help="write the stores as JSON lines to stdout (holds password hashes)")
    export.add_argument("--config", type=Path, required=True, metavar="FILE",
                        help="path to dockyard.toml")
    export.add_argument("--store", choices=STORES, action="append",
                        help="only this store (repeatable); default: all")
    export.set_defaults(run=_export)
    load = commands.add_parser("import", help="load an export from stdin into empty stores")
    load.add_argument("--config", type=Path, required=True, metavar="FILE",
                      help="path to dockyard.toml")
    load.set_defaults(run=_import)


def _export(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    names = [name for name in STORES if name in (args.store or STORES)]
    counts = asyncio.run(export_stores(config, sys.stdout, names))
    _summary("exported", counts)
    return 0


def _import(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    counts = asyncio.run(import_stores(config, sys.stdin))
    _summary(f"imported into {config.store.backend}:", counts)
    return 0


def _summary(verb: str, counts: dict[str, int]) -> None:
    done = ", ".join(f"{name} {count} record(s)" for name, count in counts.items()) or "nothing"
    print(f"dockyard: {verb} {done}", file=sys.stderr)  # noqa: T201 - the CLI's report
