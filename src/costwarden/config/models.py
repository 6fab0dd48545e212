"""Pydantic models of `costwarden.yaml`: frozen, unknown keys rejected."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, Field, StringConstraints, model_validator

from costwarden.config.alerts import AlertSinkConfig
from costwarden.config.base import Model
from costwarden.config.batch import BatchConfig
from costwarden.config.cache import CacheConfig, DeploymentCache
from costwarden.config.compute import ComputeConfig, DeploymentCompute
from costwarden.config.compute_checks import compute_problems
from costwarden.config.governance import BudgetConfig, GovernanceConfig
from costwarden.config.hardware import HardwareConfig, resolve_profile
from costwarden.config.metrics import MetricsConfig
from costwarden.config.observability import ObservabilityConfig
from costwarden.domain.budget import Action, Budget
from costwarden.domain.pricing import ComputePrice, PriceSheet


class ServerConfig(Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    admin_token: str | None = None
    # A read-only token for GET /scaling/v1/{deployment} only (KEDA's TriggerAuthentication); the admin token works too.
    scaling_token: str | None = Field(default=None, min_length=16)
    # The client edge: how long and how much a client may take to send its request.
    header_timeout_seconds: float = Field(default=10.0, gt=0)  # from the first byte to the end of headers
    body_timeout_seconds: float = Field(default=30.0, gt=0)  # from the end of headers to the end of the body
    max_slow_bodies: int = Field(default=256, ge=1)  # requests still waiting for body bytes, at once
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)  # names + values of all request headers
    max_headers: int = Field(default=100, ge=8)
    max_header_value_bytes: int = Field(default=16 * 1024, ge=256)  # name + value of one header
    max_target_bytes: int = Field(default=8 * 1024, ge=256)  # path + query of the request line (414 past it)
    # Seconds a keep-alive connection may stay idle between two requests (both engines; uvicorn
    # rounds up to whole seconds), and requests served on one connection (engine: fast only; the
    # last answer closes it).
    keepalive_timeout_seconds: float = Field(default=30.0, gt=0)
    keepalive_max_requests: int = Field(default=1000, ge=1)
    # V2 over gRPC (KServe GRPCInferenceService) on this port beside HTTP; off when None. Its message
    # limit is max_body_bytes.
    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    # The HTTP engine of `port`: `asgi` (uvicorn + the ASGI app, every route) or `fast` (app/fast_*:
    # the inference paths on asyncio protocols + httptools; the admin API, dashboard, docs and Batch
    # API handed to the ASGI app in-process on `port`, or only on `admin_port` when it is set).
    engine: Literal["asgi", "fast"] = "fast"
    admin_port: int | None = Field(default=None, ge=0, le=65535)
    # Worker processes serving `port` (and `admin_port`) from sockets a master binds once
    # (app/supervisor.py); more than 1 needs the shared `state` store (see `workers_problem`).
    workers: int = Field(default=1, ge=1, le=64)

    @model_validator(mode="after")
    def _engine_ports(self) -> ServerConfig:
        if self.engine == "fast":
            if self.admin_port == self.port and self.port != 0:
                raise ValueError(
                    f"admin_port must differ from port ({self.port}) with engine: fast "
                    "(leave it out to serve the admin API on port)"
                )
        elif self.admin_port is not None:
            raise ValueError("admin_port is used only with engine: fast (engine: asgi serves every route on port)")
        return self


def workers_problem(workers: int, state: str | None) -> str | None:
    """Why `workers` processes cannot serve this config, or None. Workers share only what replicas
    share: with the in-process state store each would count budgets and rate limits on its own and
    each would lead the governor (alerts N times), so N > 1 needs the shared `state` store."""
    if workers > 1 and state is None:
        return (
            f"{workers} workers need the shared state store (top-level `state: redis://...`): with the "
            "in-process store each worker would count budgets and rate limits on its own and lead the "
            "governor, retention and folding itself; set `state`, or serve 1 worker"
        )
    return None


class RetentionConfig(Model):
    # Raw ledger records older than this many days are pruned by `costwarden ledger prune`
    # (None: kept for ever); rollups are kept. At least a day, so a late spool replay still finds
    # its records stored and is not counted twice.
    raw_days: float | None = Field(default=None, ge=1)
    batch: int = Field(default=10_000, gt=0)  # records deleted per transaction
    # With raw_days set, the gateway holding the governor's lease prunes this often (0: never; cron only).
    prune_every_seconds: float = Field(default=3600.0, ge=0)


class StorageConfig(Model):
    ledger: str = "sqlite:///./costwarden.db"
    spool_dir: str = "./.costwarden-spool"
    flush_interval_ms: int = Field(default=200, gt=0)
    batch_size: int = Field(default=1000, gt=0)
    key_refresh_seconds: float = Field(default=2.0, gt=0)
    # Ledger integrity (see docs/architecture.md): adopt dead replicas' spools under the spool
    # root this often (0: only at start); /readyz fails once a record has waited this many flushes.
    adopt_orphans_seconds: float = Field(default=15.0, ge=0)
    stall_after_flushes: int = Field(default=25, ge=2)
    # Each refresh reads only changed keys; a full reload also picks up rows edited by hand.
    key_full_refresh_seconds: float = Field(default=3600.0, gt=0)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    # PostgreSQL: a new (empty) ledger is partitioned by month when a gateway first opens it; an
    # existing one keeps its shape until `costwarden ledger partition` (docs/scale.md).
    partition: Literal["none", "monthly"] = "none"

    @model_validator(mode="after")
    def _known_scheme(self) -> StorageConfig:
        if not self.ledger.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("ledger must start with sqlite:/// or postgresql://")
        if self.partition != "none" and self.ledger.startswith("sqlite:///"):
            raise ValueError("partition: monthly needs a PostgreSQL ledger (storage.ledger is SQLite)")
        return self


class Timeouts(Model):
    connect: float = Field(default=5.0, gt=0)
    read: float = Field(default=120.0, gt=0)


class UpstreamTls(Model):
    """How https:// upstreams are verified (both engines: aiohttp and the fast engine's pool)."""

    # A PEM bundle of the CAs to trust instead of the system's (absolute, or relative to the config
    # file's folder); the loader loads it once anchored there (config/paths.py).
    ca_file: str | None = Field(default=None, min_length=1)
    verify: bool = True  # false: no certificate or hostname check (a test upstream only)


class UpstreamHealth(Model):
    """Passive health of a deployment's upstreams (see upstream/health.py)."""

    # Consecutive failures (connect failure, timeout, 5xx) that take an upstream out of service.
    eject_after: int = Field(default=5, ge=1, le=1000)
    # How long an ejected upstream stays out before one request probes it.
    cooldown_seconds: float = Field(default=30.0, gt=0, le=86400)


# An image kind: `size` or `size/quality`, e.g. 1024x1024/hd.
ImageKind = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,32}(/[A-Za-z0-9_.\-]{1,32})?$")]


class ComputePricing(Model):
    hourly_usd: Decimal = Field(ge=0)
    concurrency: int = Field(default=1, ge=1)


class Pricing(Model):
    """USD prices; any combination may be set."""

    input_per_1m: Decimal | None = Field(default=None, ge=0)
    output_per_1m: Decimal | None = Field(default=None, ge=0)
    cached_input_per_1m: Decimal | None = Field(default=None, ge=0)
    per_request: Decimal | None = Field(default=None, ge=0)
    per_item: Decimal | None = Field(default=None, ge=0)
    compute: ComputePricing | None = None
    # The modal units (docs/modalities.md): per image by `size/quality` or `size` (e.g.
    # `1024x1024/hd: 0.08`, `1024x1024: 0.04`), per second of input audio, per 1M speech input
    # characters, per reranked document, per search unit (each started block of 100 documents).
    per_image: dict[ImageKind, Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]] | None = None
    per_audio_second: Decimal | None = Field(default=None, ge=0)
    per_1m_characters: Decimal | None = Field(default=None, ge=0)
    per_document: Decimal | None = Field(default=None, ge=0)
    per_search_unit: Decimal | None = Field(default=None, ge=0)

    def sheet(self) -> PriceSheet:
        compute = ComputePrice(self.compute.hourly_usd, self.compute.concurrency) if self.compute is not None else None
        return PriceSheet(
            input_per_1m=self.input_per_1m,
            output_per_1m=self.output_per_1m,
            cached_input_per_1m=self.cached_input_per_1m,
            per_request=self.per_request,
            per_item=self.per_item,
            compute=compute,
            per_image=None if self.per_image is None else tuple(sorted(self.per_image.items())),
            per_audio_second=self.per_audio_second,
            per_1m_characters=self.per_1m_characters,
            per_document=self.per_document,
            per_search_unit=self.per_search_unit,
        )


def urls_of(upstream: AnyHttpUrl | None, upstreams: tuple[AnyHttpUrl, ...]) -> tuple[str, ...]:
    """The upstream URLs of a deployment or variant, without a trailing slash."""
    urls = upstreams if upstreams else (upstream,)
    return tuple(str(u).rstrip("/") for u in urls if u is not None)


class Variant(Model):
    """A cheaper alternative of a deployment, served while a `degrade` budget says so: its own
    upstream(s), model name and prices (same protocol as the deployment)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-:]{1,128}$")
    upstream: AnyHttpUrl | None = None
    upstreams: tuple[AnyHttpUrl, ...] = ()
    model: str | None = None  # upstream model name; defaults to the variant name
    api_key: str | None = None
    pricing: Pricing = Pricing()

    @model_validator(mode="after")
    def _one_upstream(self) -> Variant:
        if (self.upstream is None) == (not self.upstreams):
            raise ValueError("set exactly one of `upstream` (a URL) and `upstreams` (a list of URLs)")
        return self

    @property
    def upstream_urls(self) -> tuple[str, ...]:
        return urls_of(self.upstream, self.upstreams)


class Deployment(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-:]{1,128}$")
    protocol: Literal["openai", "v2", "http"]
    upstream: AnyHttpUrl | None = None
    upstreams: tuple[AnyHttpUrl, ...] = ()
    model: str | None = None  # upstream model name; defaults to the deployment name
    api_key: str | None = None  # sent upstream as a bearer token
    # V2 deployments: the upstream's gRPC address (host:port), for calls to the gateway's gRPC port.
    grpc_upstream: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-\[\]:]{1,255}:[0-9]{1,5}$")
    timeouts: Timeouts = Timeouts()
    health: UpstreamHealth = UpstreamHealth()
    tls: UpstreamTls = UpstreamTls()
    # Deployments (same protocol) that serve the request when none of this one's upstreams can.
    fallbacks: tuple[str, ...] = ()
    pricing: Pricing = Pricing()
    # The most one request may cost: the admission estimate when its output is not bounded.
    max_cost_per_request: Decimal | None = Field(default=None, gt=0)
    # Bounds on a reply's output tokens, used to price a request that sets no max_tokens (admission):
    # the model's output limit, else its context window (docs/governance.md).
    max_output_tokens: int | None = Field(default=None, gt=0)
    context_window: int | None = Field(default=None, gt=0)
    # Cheaper alternatives, in order, for `degrade` budgets (docs/actions.md).
    variants: tuple[Variant, ...] = ()
    # Overrides of the global response cache (docs/actions.md, "cache").
    cache: DeploymentCache = DeploymentCache()
    # Self-hosted replicas: hardware profile and replica count, for `costwarden allocation` (docs/compute.md).
    compute: DeploymentCompute | None = None

    @model_validator(mode="after")
    def _one_upstream(self) -> Deployment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be distinct, got {names}")
        if self.upstream is None and not self.upstreams:
            raise ValueError("set `upstream` (a URL) or `upstreams` (a list of URLs)")
        if self.upstream is not None and self.upstreams:
            raise ValueError("set only one of `upstream` and `upstreams`")
        return self

    @property
    def upstream_urls(self) -> tuple[str, ...]:
        return urls_of(self.upstream, self.upstreams)


class Team(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    projects: tuple[str, ...] = Field(min_length=1)


class ApiKeyConfig(Model):
    """A key declared in the file. `key` is the full secret (use `${ENV_VAR}`)."""

    id: str = Field(pattern=r"^[A-Za-z0-9\-]{1,64}$")
    key: str = Field(min_length=16)
    team: str
    project: str
    environment: str
    name: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    deployments: tuple[str, ...] | None = None
    allow_client_tags: bool = False


_COUNTED = (
    "include_compute cannot count the replicas of {} (`replicas: {{prometheus: ...}}`): a budget's replica cost "
    "must be the same on every gateway replica and after a restart, a function of config and clock, and a live "
    "Prometheus count is not; scope the budget to deployments with a fixed replica count or drop include_compute "
    "(their cost is in `costwarden allocation` and costwarden_compute_cost_usd_total)"
)


class Config(Model):
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    environments: tuple[str, ...] = ("prod", "staging", "dev")
    teams: tuple[Team, ...] = ()
    deployments: tuple[Deployment, ...] = Field(min_length=1)
    keys: tuple[ApiKeyConfig, ...] = ()
    # Shared admission state for several replicas (redis://host:port/db); in-process when absent.
    state: str | None = Field(default=None, pattern=r"^rediss?://")
    governance: GovernanceConfig = GovernanceConfig()
    alerts: tuple[AlertSinkConfig, ...] = ()
    metrics: MetricsConfig = MetricsConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    # Machine shapes with hourly prices, for `costwarden bench` and `hardware recommend` (config/hardware.py).
    hardware: tuple[HardwareConfig, ...] = ()
    batch: BatchConfig = BatchConfig()
    cache: CacheConfig = CacheConfig()
    # Collectors that measure the replicas on this host, and sample retention (config/compute.py).
    compute: ComputeConfig = ComputeConfig()

    def compute_rate(self, scope: Mapping[str, str]) -> Decimal:
        """What the replicas of the deployments in `scope` cost an hour: the scope's deployment, or
        every deployment when the scope is empty; those with a fixed replica count (`compute:`)."""
        rate = Decimal(0)
        for dep in self.deployments:
            compute = dep.compute
            in_scope = scope.get("deployment", dep.name) == dep.name
            if compute is None or not isinstance(compute.replicas, int) or not in_scope:
                continue
            profile = resolve_profile(compute.profile, self.hardware)
            if profile is not None:
                rate += profile.hourly(compute.spot) * compute.replicas
        return rate

    def _prometheus_counted(self, scope: Mapping[str, str]) -> list[str]:
        """The deployments in `scope` whose replicas Prometheus counts (include_compute cannot count them)."""
        return [
            dep.name
            for dep in self.deployments
            if dep.compute is not None
            and not isinstance(dep.compute.replicas, int)
            and scope.get("deployment", dep.name) == dep.name
        ]

    def budget_of(self, budget: BudgetConfig) -> Budget:
        """The domain budget of a config or stored budget, with its replica cost when it includes compute."""
        return budget.budget(self.governance.timezone, self.compute_rate(budget.scope))

    def reference_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-references that do not resolve, each with the location of the key at fault."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        names = [d.name for d in self.deployments]
        if self.cache.backend == "redis" and self.cache.url is None and self.state is None:
            problems.append((("cache", "backend"), "a redis cache needs `cache.url` or the top-level `state` URL"))
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append((("deployments", i, "name"), f"deployment name {name!r} is used twice"))
        for i, key in enumerate(self.keys):
            for field_name, message in attribution_problems(self, key.team, key.project, key.environment):
                problems.append((("keys", i, field_name), message))
            for j, dep in enumerate(key.deployments or ()):
                if dep not in names:
                    problems.append((("keys", i, "deployments", j), f"unknown deployment {dep!r}; declared: {names}"))
        problems.extend(self._fallback_problems())
        problems.extend(self._governance_problems(names))
        sinks = [sink.name or sink.type for sink in self.alerts]
        for i, sink_name in enumerate(sinks):
            if sink_name in sinks[:i] or sink_name == "store":
                problems.append((("alerts", i, "name"), f"alert sink name {sink_name!r} is taken; give each a `name`"))
        ids = [k.id for k in self.keys]
        for i, key_id in enumerate(ids):
            if key_id in ids[:i]:
                problems.append((("keys", i, "id"), f"key id {key_id!r} is used twice"))
        computes = [(d.name, d.compute) for d in self.deployments]
        budget_ids = [b.id for b in self.governance.budgets]
        problems.extend(compute_problems(computes, self.hardware, budget_ids, self.compute.collectors))
        problem = workers_problem(self.server.workers, self.state)
        if problem is not None:
            problems.append((("server", "workers"), problem))
        return problems

    def _fallback_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Each fallback names another declared deployment of the same protocol, with no cycle."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        by_name = {d.name: d for d in self.deployments}
        for i, dep in enumerate(self.deployments):
            for j, name in enumerate(dep.fallbacks):
                where: tuple[str | int, ...] = ("deployments", i, "fallbacks", j)
                target = by_name.get(name)
                if target is None:
                    problems.append((where, f"unknown deployment {name!r}; declared: {list(by_name)}"))
                elif name == dep.name or name in dep.fallbacks[:j]:
                    what = "itself" if name == dep.name else "a fallback"
                    problems.append((where, f"fallback {name!r} repeats {what}"))
                elif target.protocol != dep.protocol:
                    problems.append(
                        (where, f"fallback {name!r} speaks {target.protocol}, not {dep.protocol} like {dep.name!r}")
                    )
            cycle = _fallback_cycle(dep.name, by_name)
            if cycle:
                problems.append((("deployments", i, "fallbacks"), f"fallbacks form a cycle: {' -> '.join(cycle)}"))
        return problems

    def _governance_problems(self, deployments: list[str]) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        gov = self.governance
        ids = [b.id for b in gov.budgets]
        teams = {t.name for t in self.teams}
        known = {
            "deployment": set(deployments),
            "team": teams,
            "environment": set(self.environments),
            "project": {p for t in self.teams for p in t.projects},
        }
        for i, budget in enumerate(gov.budgets):
            if budget.id in ids[:i]:
                problems.append((("governance", "budgets", i, "id"), f"budget id {budget.id!r} is used twice"))
            for dim, value in budget.scope.items():
                if dim in known and value not in known[dim]:
                    where = ("governance", "budgets", i, "scope", dim)
                    problems.append((where, f"unknown {dim} {value!r}; declared: {sorted(known[dim])}"))
            try:
                budget.budget(gov.timezone)
            except ValueError as exc:
                problems.append((("governance", "budgets", i), str(exc)))
            counted = self._prometheus_counted(budget.scope) if budget.include_compute else []
            if counted:
                problems.append((("governance", "budgets", i, "include_compute"), _COUNTED.format(counted)))
            problems.extend(self._degrade_problems(i, teams))
            problems.extend(self._queue_problems(i, teams))
        for i, team in enumerate(self.batch.priority_teams):
            if team not in teams:
                problems.append((("batch", "priority_teams", i), f"unknown team {team!r}; declared: {sorted(teams)}"))
        return problems

    def _queue_problems(self, index: int, teams: set[str]) -> list[tuple[tuple[str | int, ...], str]]:
        """A `queue` budget needs the batch queue and exempts declared teams."""
        budget = self.governance.budgets[index]
        where: tuple[str | int, ...] = ("governance", "budgets", index)
        problems = [
            ((*where, "queue", "exempt_teams", j), f"unknown team {team!r}; declared: {sorted(teams)}")
            for j, team in enumerate(budget.queue.exempt_teams if budget.queue else ())
            if team not in teams
        ]
        if budget.action is Action.QUEUE and not self.batch.enabled:
            problems.append(((*where, "action"), "action queue needs the batch queue: `batch.enabled` is false"))
        return problems

    def _degrade_problems(self, index: int, teams: set[str]) -> list[tuple[tuple[str | int, ...], str]]:
        """A `degrade` budget exempts declared teams and covers a deployment that has variants."""
        budget = self.governance.budgets[index]
        rule = budget.degrade_rule()
        if rule is None:
            return []
        where: tuple[str | int, ...] = ("governance", "budgets", index)
        problems = [
            ((*where, "degrade", "exempt_teams", j), f"unknown team {team!r}; declared: {sorted(teams)}")
            for j, team in enumerate(rule.exempt_teams)
            if team not in teams
        ]
        named = budget.scope.get("deployment")
        candidates = [d for d in self.deployments if named is None or d.name == named]
        if candidates and not any(d.variants for d in candidates):
            what = f"deployment {named!r}" if named else "no deployment"
            problems.append(((*where, "action"), f"action degrade, but {what} has `variants` to degrade to"))
        return problems

    def deployment(self, name: str) -> Deployment | None:
        for dep in self.deployments:
            if dep.name == name:
                return dep
        return None


def _fallback_cycle(start: str, by_name: dict[str, Deployment]) -> list[str]:
    """A path of fallbacks from `start` back to `start`, or [] when there is none."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        name, path = stack.pop()
        dep = by_name.get(name)
        for nxt in dep.fallbacks if dep is not None else ():
            if nxt == start and len(path) > 1:
                return [*path, nxt]
            if nxt not in seen and nxt != start:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return []


def attribution_problems(config: Config, team: str, project: str, environment: str) -> list[tuple[str, str]]:
    """(field, message) for each of team, project, environment that is not declared."""
    problems: list[tuple[str, str]] = []
    teams = {t.name: t for t in config.teams}
    if team not in teams:
        problems.append(("team", f"unknown team {team!r}; declared teams: {sorted(teams)}"))
    elif project not in teams[team].projects:
        problems.append(
            ("project", f"team {team!r} has no project {project!r}; its projects: {list(teams[team].projects)}")
        )
    if environment not in config.environments:
        problems.append(("environment", f"unknown environment {environment!r}; declared: {list(config.environments)}"))
    return problems


def check_attribution(config: Config, team: str, project: str, environment: str) -> None:
    """Raise ValueError unless the team, project and environment are all declared."""
    problems = attribution_problems(config, team, project, environment)
    if problems:
        raise ValueError("; ".join(message for _, message in problems))
