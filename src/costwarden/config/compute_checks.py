"""The checks of the config's compute parts that span sections (deployments, `hardware:`, budgets,
collectors), each problem with the key it is about, so that the loader names file, line and key."""

from __future__ import annotations

from collections.abc import Sequence

from costwarden.config.compute import CollectorConfig, DeploymentCompute, ProcessCollector
from costwarden.config.hardware import HardwareConfig, known_names, resolve_profile

Problem = tuple[tuple[str | int, ...], str]


def compute_problems(
    deployments: Sequence[tuple[str, DeploymentCompute | None]],
    hardware: tuple[HardwareConfig, ...],
    budgets: Sequence[str],
    collectors: Sequence[CollectorConfig],
) -> list[Problem]:
    """Each hardware profile is declared once; each `compute.profile` resolves, and has a spot price
    where `spot` asks for it; a scaling budget is declared; each process collector names a deployment
    with `compute`. `deployments`: (name, compute) in the file's order; `budgets`: the declared ids."""
    problems: list[Problem] = []
    names = [h.name for h in hardware]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append((("hardware", i, "name"), f"hardware profile {name!r} is used twice"))
    for i, (_, compute) in enumerate(deployments):
        if compute is None:
            continue
        profile = resolve_profile(compute.profile, hardware)
        if profile is None:
            message = f"unknown hardware profile {compute.profile!r}; known: {known_names(hardware)}"
            problems.append((("deployments", i, "compute", "profile"), message))
        elif compute.spot and profile.spot_hourly_usd is None:
            message = (
                f"spot: true, but hardware profile {compute.profile!r} has no spot_hourly_usd (the catalogue "
                "lists on-demand prices only): declare the profile under `hardware:` with its spot price, or drop spot"
            )
            problems.append((("deployments", i, "compute", "spot"), message))
        scaling = compute.scaling
        if scaling is not None and scaling.budget is not None and scaling.budget not in budgets:
            message = f"unknown budget {scaling.budget!r}; the config file declares: {list(budgets)}"
            problems.append((("deployments", i, "compute", "scaling", "budget"), message))
    computed = [name for name, compute in deployments if compute is not None]
    for i, collector in enumerate(collectors):
        if isinstance(collector, ProcessCollector) and collector.deployment not in computed:
            where: tuple[str | int, ...] = ("compute", "collectors", i, "deployment")
            problems.append((where, f"deployment {collector.deployment!r} has no `compute:`; with it: {computed}"))
    return problems
