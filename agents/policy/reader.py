"""Reading the `policy:` section of an agent config into a `SitePolicy`, strictly.

Owns: the section's schema and its checks, each error naming file, line and the fix: names as the gateway
writes them, projects whose tenant the centre accepts, image prefixes without a scheme or tag, a real IANA
time zone, offer windows whose hours parse and whose last window always holds (so every hour has a share),
and offers only for declared pools. It does not judge launches (`agents.policy.terms`).

    policy:
      tenants: [deepsea-ai, panda-lm]
      projects: [deepsea-ai/llama-sft]
      max_job_cards: 16
      image_registries: [registry.example.org, harbor.centre-a.cn/ai]
      timezone: Asia/Shanghai
      offers:
        ascend-910b:
          - {hours: "08:00-20:00", days: [mon, tue, wed, thu, fri], share: 0.3}
          - {share: 0.8}
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents.core.model import PoolSpec
from agents.policy.terms import DAYS, Hours, OfferWindow, SitePolicy
from fedgate.common.sections import Section
from fedgate.common.terms import parse_registry

NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
NAME_HINT = "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
# host[:port][/path], lowercase as image references are: no scheme, no tag, no digest, no trailing slash.
_COMPONENT = r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?"
REGISTRY = re.compile(rf"{_COMPONENT}(?::[0-9]{{1,5}})?(?:/{_COMPONENT})*")


def parse_site_policy(section: Section, pools: tuple[PoolSpec, ...]) -> SitePolicy:
    """Validate the `policy:` mapping against the declared pools. Raises ConfigError naming file and line."""
    tenants = section.strings("tenants")
    for i, tenant in enumerate(tenants):
        if not NAME.fullmatch(tenant):
            section.fail_item("tenants", i, f"policy.tenants[{i}] {tenant!r} is not a tenant name; {NAME_HINT}")
    projects = section.strings("projects")
    for i, pair in enumerate(projects):
        tenant, slash, project = pair.partition("/")
        if not (slash and NAME.fullmatch(tenant) and NAME.fullmatch(project)):
            section.fail_item(
                "projects", i, f"policy.projects[{i}] {pair!r} must be tenant/project, e.g. deepsea-ai/llama-sft"
            )
        if tenants and tenant not in tenants:
            section.fail_item(
                "projects",
                i,
                f"policy.projects[{i}] {pair!r} names tenant {tenant!r}, which policy.tenants does not accept; "
                f"add {tenant} to policy.tenants or remove the project",
            )
    # Absent (or null): no limit beyond the offer.
    limit = section.raw("max_job_cards", None)
    max_job_cards = None if limit is None else section.integer("max_job_cards", minimum=1)
    registries = section.strings("image_registries")
    for i, registry in enumerate(registries):
        if not REGISTRY.fullmatch(registry) or parse_registry(registry) is None:
            section.fail_item(
                "image_registries",
                i,
                f"policy.image_registries[{i}] {registry!r} is not an image prefix; write host[:port][/path] in "
                "lowercase without https:// or a tag, the host with a dot or a port (or localhost), e.g. "
                "registry.example.org or harbor.centre-a.cn/ai",
            )
    timezone = _timezone(section)
    offers = {} if section.raw("offers", None) is None else _offers(section, pools)
    section.finish()
    return SitePolicy(
        tenants=tenants,
        projects=projects,
        max_job_cards=max_job_cards,
        image_registries=registries,
        timezone=timezone,
        offers=offers,
    )


def _timezone(section: Section) -> str:
    name = section.text("timezone", "UTC")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        section.fail(
            f"policy.timezone {name!r} is not a time zone this machine knows; use an IANA name such as "
            "Asia/Shanghai, Europe/Berlin or UTC (install the tzdata package if none are known)",
            "timezone",
        )
    return name


def _offers(policy: Section, pools: tuple[PoolSpec, ...]) -> dict[str, tuple[OfferWindow, ...]]:
    section = policy.section("offers")
    declared = [p.accelerator_class for p in pools]
    offers: dict[str, tuple[OfferWindow, ...]] = {}
    for name in section.key_names():
        if name not in declared:
            section.fail(
                f"policy.offers names {name!r}, which no pool declares; declared pools: {', '.join(declared)}",
                name,
            )
        windows = section.sections(name)
        if not windows:
            section.fail(f"policy.offers.{name} is empty; give at least one window, e.g. - {{share: 0.5}}", name)
        offers[name] = tuple(_window(w) for w in windows)
        for i, window in enumerate(offers[name][:-1]):
            if window.always:
                windows[i + 1].fail(
                    f"{windows[i + 1].where} is never used: {windows[i].where} above it has no hours or days and "
                    "so always holds; move the catch-all window to the end"
                )
        if not offers[name][-1].always:
            windows[-1].fail(
                f"the last window of policy.offers.{name} has hours or days, so some hours would have no share; "
                "end the list with a window without hours and days, e.g. - {share: 0} to offer nothing otherwise"
            )
    section.finish()
    return offers


def _window(section: Section) -> OfferWindow:
    share = section.number("share")
    if not 0 <= share <= 1:
        section.fail(f"{section.path('share')} must be between 0 and 1 (0.3 = 30 %), got {share:g}", "share")
    hours = None
    if section.raw("hours", None) is not None:
        try:
            hours = Hours.parse(section.text("hours"))
        except ValueError as exc:
            section.fail(f"{section.path('hours')}: {exc}", "hours")
    days = section.strings("days")
    for i, day in enumerate(days):
        if day not in DAYS:
            section.fail_item("days", i, f"{section.path('days')}[{i}] {day!r} is not a day; use {', '.join(DAYS)}")
    if section.has("days") and not days:
        section.fail(f"{section.path('days')} is empty; list days or leave the key out for every day", "days")
    section.finish()
    return OfferWindow(share=share, hours=hours, days=days)
