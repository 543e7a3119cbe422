"""The centres' own policies for a twin run: terms and offer windows per site, read strictly from YAML.

Owns: `CentrePolicy` (what a simulated centre reports, enforces and offers by) and the centres file
(`fedgate simulate --centres`), one entry per site with the keys of an agent config's `policy:` section, so
that a centre's section can be copied over as it is:

    centres:
      - site: centre-a
        tenants: [deepsea-ai]
        projects: [deepsea-ai/llama-sft]
        max_job_cards: 16
        image_registries: [registry.example]
        timezone: Asia/Shanghai
        offers:
          nvidia-h100:
            - {hours: "08:00-20:00", days: [mon, tue, wed, thu, fri], share: 0.3}
            - {share: 0.8}

Every error names the file and the line. The windows parse by `fedgate.common.offers` (the agent's rule); the
last window of a class must always hold, as the agent requires. It checks the names against the sites file
given (`check_centres`), since only the caller has both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fedgate.common.fields import FieldReader
from fedgate.common.offers import DAYS, Hours, OfferWindow, Schedule, next_change, window_at
from fedgate.common.yaml import YamlDocument, load_yaml
from gateway.errors import ConfigError
from gateway.simulate.sites import SiteSpec
from gateway.sites.model import SiteTerms


@dataclass(frozen=True)
class CentrePolicy:
    """A simulated centre's policy, as an agent's `policy:` section holds it: the terms it reports with its
    capacity and enforces (`fedgate.common.terms`), and its offer windows (`fedgate.common.offers`)."""

    terms: SiteTerms = field(default_factory=SiteTerms)
    timezone: str = "UTC"
    """IANA time zone the windows are written in."""
    offers: Schedule = field(default_factory=dict)
    """Per pool class, windows checked in order, the last one always holding; a class without: all its cards."""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def window(self, accelerator_class: str, at: datetime) -> OfferWindow | None:
        return window_at(self.offers, self.zone, accelerator_class, at)

    def next_change(self, at: datetime) -> datetime | None:
        return next_change(self.offers, self.zone, at)


MAX_CENTRES_BYTES = 4 << 20
KEYS = ("site", "tenants", "projects", "max_job_cards", "image_registries", "timezone", "offers")


def load_centres(path: Path) -> dict[str, CentrePolicy]:
    return parse_centres(load_yaml(path, max_bytes=MAX_CENTRES_BYTES, error=ConfigError))


def parse_centres(doc: YamlDocument) -> dict[str, CentrePolicy]:
    fields = FieldReader(doc)
    fields.mapping((), allowed=("centres",), required=("centres",))
    centres: dict[str, CentrePolicy] = {}
    for i in range(len(fields.sequence(("centres",)))):
        path = ("centres", i)
        fields.mapping(path, allowed=KEYS, required=("site",))
        site = fields.string((*path, "site"))
        if site in centres:
            raise fields.error((*path, "site"), f"centre {site!r} is described twice", "give each centre one entry")
        zone = fields.string((*path, "timezone"), default="UTC")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise fields.error((*path, "timezone"), f"{zone!r} is not a time zone", "use an IANA name") from None
        terms = SiteTerms(
            tenants=fields.strings((*path, "tenants")),
            projects=fields.strings((*path, "projects")),
            max_job_cards=fields.integer((*path, "max_job_cards"), default=0, minimum=0),
            image_registries=fields.strings((*path, "image_registries")),
        )
        offers = fields.mapping((*path, "offers"), allowed=_any_key(fields, (*path, "offers")), optional=True)
        schedule = {cls: _windows(fields, (*path, "offers", cls)) for cls in offers}
        centres[site] = CentrePolicy(terms, zone, schedule)
    return centres


def _any_key(fields: FieldReader, path: tuple[str | int, ...]) -> tuple[str, ...]:
    value = fields.value(path)
    return tuple(value) if isinstance(value, dict) else ()


def _windows(fields: FieldReader, path: tuple[str | int, ...]) -> tuple[OfferWindow, ...]:
    windows: list[OfferWindow] = []
    items = fields.sequence(path)
    if not items:
        raise fields.error(path, "the list is empty", "give at least one window, e.g. - {share: 0.5}")
    for j in range(len(items)):
        where = (*path, j)
        fields.mapping(where, allowed=("share", "hours", "days"), required=("share",))
        share = fields.number((*where, "share"), minimum=0, maximum=1)
        hours = None
        if text := fields.string((*where, "hours"), default=""):
            try:
                hours = Hours.parse(text)
            except ValueError as exc:
                raise fields.error((*where, "hours"), str(exc)) from None
        days = fields.strings((*where, "days"))
        for day in days:
            if day not in DAYS:
                raise fields.error((*where, "days"), f"{day!r} is not a day", f"use {', '.join(DAYS)}")
        windows.append(OfferWindow(share=share, hours=hours, days=days))
    if not windows[-1].always:
        raise fields.error(path, "the last window has hours or days", "end with a window of share alone")
    return tuple(windows)


def check_centres(centres: dict[str, CentrePolicy], sites: tuple[SiteSpec, ...], source: str) -> None:
    """Every centre named is a site of the sites file: a typo would silently leave a centre without its terms."""
    names = {s.name for s in sites}
    for name in centres:
        if name not in names:
            raise ConfigError(f"{source}: centre {name!r} is not in the sites file (sites: {', '.join(sorted(names))})")
