"""A budget shared by several processes through PostgreSQL (``Budget.postgres``).

Two tables: ``combinators_budgets`` holds each budget's spent totals, and
``combinators_budget_reservations`` one row per leaf call in flight, with a
lease.  A reservation locks the budget's row (``SELECT ... FOR UPDATE``), so
reservers of one budget go one at a time whatever process they are in;
it drops the reservations whose lease has expired, sums the live ones and
inserts its own only if ``spent + reserved + asked`` fits.  Settling
deletes the reservation and adds the charge to ``spent``, under the same
lock.  While a leaf runs, its reservation's lease is pushed ``lease``
seconds ahead every ``lease / 3`` seconds; a killed process stops renewing,
and its reservations are released ``lease`` seconds later (what it spent
in the meantime is not known, so it is not counted).  Amounts are
``numeric``: exact, the same decimals as in-process budgets.

psycopg 3 (extra ``postgres``), used synchronously in trio worker threads;
each call borrows an idle connection or opens one.
"""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from fractions import Fraction
from typing import Any

import trio

from ._exceptions import BuildError
from ._exceptions import FIELDS, OverBudget, Usage, _exact
from ._budget import RemoteBudget

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - depends on the install
    _msg = "Budget.postgres() needs psycopg 3: install the extra with `pip install 'combinators[postgres]'`"
    raise ImportError(_msg) from exc

_SCHEMA = """
CREATE TABLE IF NOT EXISTS combinators_budgets (
    name text PRIMARY KEY,
    calls numeric NOT NULL DEFAULT 0,
    input_tokens numeric NOT NULL DEFAULT 0,
    output_tokens numeric NOT NULL DEFAULT 0,
    cost numeric NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS combinators_budget_reservations (
    id text PRIMARY KEY,
    budget text NOT NULL,
    owner text NOT NULL,
    lease_until timestamptz NOT NULL,
    calls numeric NOT NULL,
    input_tokens numeric NOT NULL,
    output_tokens numeric NOT NULL,
    cost numeric NOT NULL
);
CREATE INDEX IF NOT EXISTS combinators_budget_reservations_budget ON combinators_budget_reservations (budget);
"""

_COLS = ", ".join(FIELDS)
_LOCK = f"SELECT {_COLS} FROM combinators_budgets WHERE name = %s FOR UPDATE"
_LIVE = f"SELECT {', '.join(f'coalesce(sum({f}), 0)' for f in FIELDS)} FROM combinators_budget_reservations WHERE budget = %s"


def _decimal(v: int | float | None) -> Decimal:
    if v is None:
        return Decimal(0)
    return Decimal(v) if isinstance(v, int) else Decimal(repr(v))


def _usage(row: tuple[Any, ...], fields: tuple[str, ...]) -> Usage:
    values = dict(zip(FIELDS, row, strict=True))
    kw: dict[str, Any] = {}
    for f in fields:
        v = values[f]
        kw[f] = float(v) if f == "cost" else int(v)
    return Usage(**kw)


class PostgresBudget(RemoteBudget):
    """A budget whose totals live in PostgreSQL, shared by every process using its name."""

    remote = True

    def __init__(self, dsn: str, limit: Usage, *, name: str, lease: float = 30.0) -> None:
        super().__init__(limit, name=name)
        if isinstance(lease, bool) or not isinstance(lease, int | float) or not lease > 0:
            msg = f"Budget.postgres({name!r}): lease must be > 0 seconds, got {lease!r}"
            raise BuildError(msg)
        self.dsn = dsn
        self.lease = float(lease)
        self.owner = uuid.uuid4().hex
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._ready = False

    def __repr__(self) -> str:
        return f"Budget.postgres(<dsn>, {self.limit!r}, name={self.name!r}, lease={self.lease!r})"

    # -- connections ---------------------------------------------------------

    def _borrow(self) -> psycopg.Connection[Any]:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        conn = psycopg.connect(self.dsn, autocommit=True)
        if not self._ready:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('combinators_budget_schema'))")
                conn.execute(_SCHEMA)
                conn.execute("INSERT INTO combinators_budgets (name) VALUES (%s) ON CONFLICT DO NOTHING", (self.name,))
            self._ready = True
        return conn

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()
            return
        with self._lock:
            self._idle.append(conn)

    def _with_conn(self, fn: Any, *args: Any) -> Any:
        conn = self._borrow()
        try:
            out = fn(conn, *args)
        except BaseException:
            conn.close()
            raise
        self._give_back(conn)
        return out

    def close(self) -> None:
        """Close the idle connections (the budget stays usable: it opens new ones)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- the ledger ----------------------------------------------------------

    def _reserve(self, conn: psycopg.Connection[Any], asked: Usage, path: str) -> str | OverBudget:
        ask = [_decimal(v) for v in asked._values()]
        with conn.transaction():
            spent = conn.execute(_LOCK, (self.name,)).fetchone()
            assert spent is not None
            conn.execute(
                "DELETE FROM combinators_budget_reservations WHERE budget = %s AND lease_until < clock_timestamp()",
                (self.name,),
            )
            live = conn.execute(_LIVE, (self.name,)).fetchone()
            assert live is not None
            limits = self.limit._values()
            for i in self._index:
                if Fraction(spent[i]) + Fraction(live[i]) + Fraction(ask[i]) > _exact(limits[i]):
                    return OverBudget(
                        self.name, self.limit, _usage(spent, self._fields), _usage(live, self._fields), asked, path
                    )
            rid = uuid.uuid4().hex
            conn.execute(
                "INSERT INTO combinators_budget_reservations (id, budget, owner, lease_until, "
                f"{_COLS}) VALUES (%s, %s, %s, clock_timestamp() + %s * interval '1 second', %s, %s, %s, %s)",
                (rid, self.name, self.owner, self.lease, *ask),
            )
        return rid

    def _settle(self, conn: psycopg.Connection[Any], rid: str, used: Usage | None) -> None:
        add = [_decimal(v) for v in (used or Usage())._values()]
        with conn.transaction():
            conn.execute(_LOCK, (self.name,))
            conn.execute("DELETE FROM combinators_budget_reservations WHERE id = %s", (rid,))
            conn.execute(
                "UPDATE combinators_budgets SET "
                + ", ".join(f"{f} = {f} + %s" for f in FIELDS)
                + " WHERE name = %s",
                (*add, self.name),
            )

    def _renew(self, conn: psycopg.Connection[Any], rid: str) -> None:
        conn.execute(
            "UPDATE combinators_budget_reservations SET lease_until = clock_timestamp() + %s * interval '1 second' "
            "WHERE id = %s",
            (self.lease, rid),
        )

    def _totals(self, conn: psycopg.Connection[Any]) -> tuple[Usage, Usage]:
        spent = conn.execute(f"SELECT {_COLS} FROM combinators_budgets WHERE name = %s", (self.name,)).fetchone()
        live = conn.execute(_LIVE + " AND lease_until >= clock_timestamp()", (self.name,)).fetchone()
        assert spent is not None and live is not None
        return _usage(spent, self._fields), _usage(live, self._fields)

    async def reserve(self, asked: Usage | None, path: str) -> str | OverBudget:
        """Reserve ``asked`` for the leaf at ``path``: a reservation id, or the refusal."""
        return await trio.to_thread.run_sync(self._with_conn, self._reserve, asked or Usage(), path)

    async def settle_remote(self, rid: str, used: Usage | None) -> None:
        """Replace reservation ``rid`` by the charge ``used`` (``None``: nothing)."""
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._with_conn, self._settle, rid, used)

    async def keep_alive(self, rid: str) -> None:
        """Renew reservation ``rid``'s lease until cancelled."""
        while True:
            await trio.sleep(self.lease / 3)
            await trio.to_thread.run_sync(self._with_conn, self._renew, rid)

    @property
    def spent(self) -> Usage:
        """What finished calls used, in every process (reads the database; blocks)."""
        return self._with_conn(self._totals)[0]  # type: ignore[no-any-return]

    @property
    def reserved(self) -> Usage:
        """What live reservations hold, in every process (reads the database; blocks)."""
        return self._with_conn(self._totals)[1]  # type: ignore[no-any-return]

    @property
    def remaining(self) -> Usage:
        """What is left to reserve (reads the database; blocks)."""
        spent, live = self._with_conn(self._totals)
        left = {
            f: max(0, getattr(self.limit, f) - (getattr(spent, f) or 0) - (getattr(live, f) or 0)) for f in self._fields
        }
        return Usage(**left)
