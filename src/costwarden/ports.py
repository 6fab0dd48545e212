"""The ports: small typed protocols that adapters in storage/ (and later alerts/) implement."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from costwarden.domain.admission import AdmissionRequest, AdmissionResult, BudgetCheck, BudgetSeed, Settlement
from costwarden.domain.alert import Alert
from costwarden.domain.batch import Batch, BatchDepth, BatchFile, Job, JobResult, JobView
from costwarden.domain.batch_files import FileQuery, Pruned
from costwarden.domain.batch_input import LineError
from costwarden.domain.budget import BudgetState
from costwarden.domain.collector_status import CollectorStatus
from costwarden.domain.compute_rollup import MinuteTotal
from costwarden.domain.compute_sample import GpuSample, ProcessSample
from costwarden.domain.deferral import DueCallback
from costwarden.domain.keys import KeyChanges, StoredKey
from costwarden.domain.quarantine import Quarantined
from costwarden.domain.record import UsageRecord
from costwarden.domain.report import RecordCursor, SpendQuery, SpendReport, SpendRow, Within
from costwarden.domain.response_cache import CachedAnswer
from costwarden.domain.variant import DegradeState


class LedgerStore(Protocol):
    """The durable ledger. Money in USD (Decimal, nano-dollar exact); times in Unix seconds.

    `write` is idempotent on `request_id`: writing a record that is already stored is a no-op,
    so replaying a spool never double-counts. It returns how many records were new.
    """

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    async def write(self, records: Sequence[UsageRecord]) -> int: ...

    async def spend(self, query: SpendQuery) -> SpendReport: ...

    async def spend_encoded(self, query: SpendQuery, encode: Callable[[SpendReport], bytes]) -> bytes:
        """`encode(spend(query))`, both away from the event loop (`encode`: a module-level function,
        which a store runs in its report process: storage/report_process.py)."""

    async def top(self, query: SpendQuery, n: int) -> list[SpendRow]:
        """The `n` costliest groups of `query` (grouped by one dimension or more; no percentiles),
        ranked in the store: the same rows, in the same order, as the first `n` of its report."""

    async def spend_series(self, query: SpendQuery, step_s: int) -> dict[int, SpendReport] | None:
        """Totals-only reports of every whole `step_s` bucket of [start, end) (both on the step's
        edges), keyed by bucket start, read at once; None when the store keeps no such grain for the
        query's dimensions (then ask `spend` bucket by bucket)."""

    async def spend_spans(
        self, query: SpendQuery, spans: Sequence[tuple[float, float | None]], within: Within = ()
    ) -> list[SpendReport]:
        """Totals-only reports of `query` (its window ignored) over each [start, end) span (end
        None: open), read at once: each exactly the one `spend` gives for that span (a budget's
        rebuild reads the counters of its window so: one statement, not one per bucket).
        `within`: only records whose dimension is one of the values, for each (dimension, values)
        pair; each dimension must be one `query` groups by (the budgets of one scope kind read
        together: a budget's rows are those whose group starts with its scope's values)."""

    async def records(
        self, start: float | None, end: float | None, limit: int, before: RecordCursor | None = None
    ) -> list[UsageRecord]:
        """Raw records in [start, end), newest first (started_at, then request_id, descending), at
        most `limit`; with `before`, only those after that cursor in this order (keyset paging)."""

    async def ping(self) -> bool: ...


class KeyStore(Protocol):
    """API keys as stored: identity, salted hash, revocation. Never the key itself."""

    async def add_key(self, key: StoredKey) -> None: ...

    async def list_keys(self) -> list[StoredKey]: ...

    async def revoke_key(self, key_id: str, at: float) -> bool:
        """Mark the key revoked at `at`; False if no such key."""

    async def key_changes(self, since: int) -> KeyChanges:
        """Keys created or revoked after change `since` (0: every key), in change order. A cursor
        below `since` means the table went back (a restore, a deleted row): reload from 0."""


class CounterStore(Protocol):
    """Shared admission state: budget spend and holds, rate limits, concurrency slots.

    In-process for one replica, Redis for many. Every method is atomic; `admit` is one round trip.
    Raises `CounterStoreUnavailable` when the store cannot be reached.

    A budget's counters are seeded (`restore`) before they admit anything: `admit` refuses a
    budget that is not (`unseeded:<id>`), so a store that lost its state (restart, FLUSHALL,
    failover, eviction of its marker) or a budget created at run time never admits from zero.
    `admit` also refuses a request planned with another generation of the budget definitions
    than the store's (`stale`, see `restore`), so a budget changed on one replica applies to the
    next admission of every replica.
    """

    async def admit(self, request: AdmissionRequest, now: float) -> AdmissionResult: ...

    async def settle(self, settlement: Settlement, now: float) -> None: ...

    async def budget_state(self, check: BudgetCheck, now: float) -> BudgetState:
        """Spent and reserved (live holds only) summed over the check's `read_keys`. Raises
        `CounterStoreUnseeded` when the budget's counters are not seeded."""

    async def restore(self, seeds: Sequence[BudgetSeed], announce_at: float | None = None) -> int:
        """Seed budgets from the ledger (holds are kept; a counter is never lowered, see BudgetSeed).
        With `announce_at` (the caller's Unix time), also move the budget definitions' generation
        on (`domain.admission.next_generation`) in the same atomic step: every admission planned
        with an older one is refused as `stale` from then on. Returns the generation (0 when never
        announced, or lost with the store's state)."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class CounterStoreUnavailable(Exception):
    """The shared counter store did not answer; callers apply the budget's fail mode."""


class CounterStoreUnseeded(Exception):
    """A budget's counters are not seeded (the store lost its state, or the budget is new): its
    figures are not the truth until a rebuild; callers apply the budget's fail mode."""


class CounterStoreCircuitOpen(CounterStoreUnavailable):
    """The store was not asked: it failed repeatedly just before (a circuit breaker is open)."""


class AlertSink(Protocol):
    """Delivers alerts somewhere (webhook, Slack, Alertmanager). Called off the request path.

    `send` receives alerts that started firing and alerts that resolved (`resolved_at` set); it
    retries transient failures itself and raises only when it gives up.
    """

    name: str

    async def send(self, alerts: Sequence[Alert]) -> None: ...

    async def close(self) -> None: ...


class AlertStore(Protocol):
    """Alert records in the ledger database, idempotent on alert id."""

    async def save_alerts(self, alerts: Sequence[Alert]) -> None:
        """Insert new alerts and update the resolved time of known ones."""

    async def list_alerts(self, active_only: bool, limit: int) -> list[Alert]: ...


class BudgetStore(Protocol):
    """Budgets defined at run time (admin API, CLI), as their validated config JSON."""

    async def list_budgets(self) -> list[tuple[str, str]]:
        """(id, definition JSON) of every stored budget."""

    async def put_budget(self, budget_id: str, definition: str, at: float) -> None:
        """Create or replace (idempotent)."""

    async def delete_budget(self, budget_id: str) -> bool: ...


class VariantStateStore(Protocol):
    """The degrade state of each `degrade` budget (domain.variant), shared by every replica so they
    switch to a cheaper variant together. Writes replace a budget's state whole (idempotent)."""

    async def load(self) -> dict[str, DegradeState]:
        """Every budget's state by budget id (a budget never degraded may be absent)."""

    async def save(self, budget_id: str, state: DegradeState) -> None: ...

    async def close(self) -> None: ...


class RecordRejected(Exception):
    """Raised by `LedgerStore.write` when the database refuses the batch for the data in it (a
    value out of range, an invalid character): retrying the same batch can never succeed. Any
    other error from `write` is transient (the database is unreachable) and worth a retry."""


class QuarantineStore(Protocol):
    """Ledger records the database refused as data, kept whole (durable, listable, newest first).
    A record quarantined twice (a crash between quarantine and spool cleanup) is listed twice."""

    async def quarantine(self, entries: Sequence[Quarantined]) -> None: ...

    async def list_quarantine(self, limit: int) -> list[Quarantined]: ...


class RetentionStore(Protocol):
    """Pruning raw records (storage.retention); rollups are kept."""

    async def prune(self, before: float, limit: int) -> int:
        """Delete at most `limit` raw records started before `before` (Unix seconds), oldest
        first, in one transaction; returns how many were deleted."""


class Store(LedgerStore, KeyStore, AlertStore, BudgetStore, QuarantineStore, RetentionStore, Protocol):
    """What one database adapter provides: ledger, keys, alerts and budgets, in one database."""


class BatchStore(Protocol):
    """Batch files and batches (the OpenAI Batch API's objects), each owned by one team: a read
    with another team returns None. Times in Unix seconds."""

    async def put_file(self, file: BatchFile, content: bytes) -> None: ...

    async def file(self, file_id: str, team: str) -> tuple[BatchFile, bytes] | None: ...

    async def queued_realtime(self, team: str) -> int:
        """Realtime requests of a team queued as jobs (batches of one) and not finished yet."""

    async def create_batch(
        self, batch: Batch, jobs: Sequence[Job], errors: Sequence[LineError], callback: str | None = None
    ) -> None:
        """Store the batch and enqueue its jobs in one transaction; `errors` go to its error file;
        `callback` is the URL each job's result is POSTed to when done (realtime jobs)."""

    async def batch(self, batch_id: str, team: str) -> Batch | None:
        """The batch with its request counts as of now."""

    async def batches(self, team: str, after: str | None, limit: int) -> list[Batch]:
        """The team's batches, newest first; with `after`, those created before that batch."""

    async def cancel(self, batch_id: str, team: str, now: float) -> Batch | None:
        """Move an unfinished batch to `cancelling`: its pending jobs never run (idempotent)."""


class JobQueue(Protocol):
    """The durable queue of batch jobs, drained by gateways' workers (one or several at once).

    A job is leased to one worker (`owner`) until `now + lease_s`; a lease that expires (its
    worker died) makes the job claimable again. `finish` is idempotent: the first result wins.
    """

    async def claim(self, owner: str, limit: int, now: float, lease_s: float) -> list[Job]:
        """Lease at most `limit` runnable jobs of batches in progress, oldest first."""

    async def finish(self, job: Job, result: JobResult, now: float) -> bool:
        """Store the job's result; False if it already had one."""

    async def defer(self, job: Job, request_id: str, not_before: float) -> None:
        """Give a leased job back to run later (refused by admission), under a new request id."""

    async def finalize(self, now: float) -> list[str]:
        """Close every batch with nothing left to run (write output and error files; expire those
        past their window); returns the ids closed. Safe to run on several gateways at once."""

    async def depth(self, now: float) -> list[BatchDepth]: ...

    async def purge(self, batch_id: str | None, now: float) -> int:
        """Drop the pending jobs of one batch (or of all): they go to the error file as purged."""


class JobLookup(Protocol):
    """One job read by its owner's team (None for another team's or an unknown id)."""

    async def job(self, job_id: str, team: str) -> JobView | None: ...


class CallbackQueue(Protocol):
    """Callbacks of realtime jobs (X-Costwarden-Callback), kept beside their jobs: delivered at
    least once, retried with backoff, across restarts."""

    async def due_callbacks(self, now: float, limit: int, lease_s: float) -> list[DueCallback]:
        """Claim callbacks whose job is done and whose next try is due: none is claimed again
        for `lease_s` (the attempt's time), so a gateway that dies mid-delivery leaves it due."""

    async def callback_result(self, job_id: str, retry_at: float | None, now: float, error: str | None) -> None:
        """Delivered (`error` None), to retry at `retry_at`, or given up (both None but the error)."""


class BatchFiles(Protocol):
    """A team's files (uploads and batch results) listed and deleted; another team's are never
    listed, and deleting one of them (or an unknown id) returns False."""

    async def files(self, team: str, query: FileQuery) -> list[BatchFile]:
        """At most `query.limit` files in `query`'s order, after `query.after` (none if unknown)."""

    async def delete_file(self, file_id: str, team: str) -> bool:
        """Delete the file and its content; a batch created from it runs on (its jobs hold their lines)."""


class QueueRetention(Protocol):
    """Purging what `batch.retention_days` lets go: finished batches, their jobs and files, old uploads."""

    async def prune_finished(self, before: float, limit: int) -> Pruned:
        """One short transaction: at most `limit` job and batch rows, oldest first: the jobs (with their
        callbacks) of batches finished before `before` (Unix seconds), and each such batch with its
        output and error files once its jobs are gone; when none is left, at most `limit` uploads
        made before `before` that no kept batch names as its input (and about `PURGE_BYTES` of them).
        Nothing deleted (`total == 0`): nothing is left to purge."""


class BatchBackend(BatchStore, JobQueue, JobLookup, CallbackQueue, BatchFiles, QueueRetention, Protocol):
    """One database holding batches and their queue."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...
class ResponseCache(Protocol):
    """Complete upstream answers by cache key (domain.response_cache: `<namespace>:<sha256>`).

    In-process (bounded LRU) or Redis (shared by replicas). `put` replaces (idempotent); an entry
    lives `ttl_seconds` at most and may be evicted sooner. Raises `ResponseCacheUnavailable` when
    the backend cannot be reached: callers serve the request uncached.
    """

    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, answer: CachedAnswer, ttl_seconds: float) -> None: ...

    async def purge(self, namespace: str | None) -> int:
        """Drop every entry of one namespace (`team/<team>`, `global`), or all (None); how many."""

    async def size(self) -> tuple[int, int | None]:
        """(entries, bytes held); bytes None when the backend cannot say cheaply (Redis)."""

    async def close(self) -> None: ...


class ResponseCacheUnavailable(Exception):
    """The response cache backend did not answer (or was skipped right after it failed)."""
class ComputeCollector(Protocol):
    """Measures replicas on this host (a process's CPU, a GPU). `start` returns False, with the reason
    in `status.last_error`, when its source is missing; `sample` blocks (C libraries, /proc), so the
    sampler runs it in a worker thread, never on the request path. Times are Unix seconds."""

    status: CollectorStatus

    def start(self) -> bool: ...

    def sample(self, now: float) -> Sequence[ProcessSample | GpuSample]: ...

    def stop(self) -> None: ...


class SampleStore(Protocol):
    """Compute samples and collector status in the ledger database; `write_samples` is append-only."""

    async def write_samples(self, samples: Sequence[ProcessSample | GpuSample]) -> int: ...

    async def samples(self, start: float, end: float) -> list[ProcessSample | GpuSample]:
        """Samples taken in [start, end], oldest first."""

    async def save_status(self, statuses: Sequence[CollectorStatus], at: float) -> None: ...

    async def statuses(self) -> list[CollectorStatus]: ...

    async def prune_samples(self, before: float) -> int: ...

    async def oldest_sample(self, after: float | None = None) -> float | None:
        """When the oldest raw sample kept (taken at or after `after`) was taken; None without any."""

    async def write_minutes(self, rows: Sequence[MinuteTotal]) -> int:
        """Upsert minute rows (a row folded again replaces the one there)."""

    async def minutes(self, start: float, end: float) -> list[MinuteTotal]:
        """Minute rows of minutes starting in [start, end)."""

    async def last_minute(self) -> int | None: ...

    async def prune_minutes(self, before: float) -> int: ...

    async def close(self) -> None: ...
