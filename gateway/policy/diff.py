"""What changes between two federation policies, and for whom: `fedgate policy diff OLD NEW`.

Owns: comparing the data form of two `FederationDocument`s (`gateway.policy.schema.to_data`) section by
section, entries keyed by name (tenants, their projects and members, joint projects and their members,
priority classes, sites, residency by classification, rules; the network's links by pair, its default and its
datasets by name), each difference as one `Change` row that says who feels it. It does not load files or print.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.policy.model import FederationDocument
from gateway.policy.schema import to_data

Data = Mapping[str, Any]


@dataclass(frozen=True)
class Change:
    section: str  # metadata, tenants, projects, priority_classes, sites, residency, rules, network
    subject: str  # the entry: "deepsea-ai", "deepsea-ai/llama-sft", "panda-lm member bob", ...
    change: str  # added | removed | changed | reordered
    field: str = ""  # the dotted key inside the entry that changed ("quota.card_hours"); "" for the whole entry
    old: Any = None
    new: Any = None
    affects: str = ""  # who feels it


@dataclass(frozen=True)
class _Nested:
    """A list inside an entry whose items are entries of their own (a tenant's projects and members)."""

    key: Callable[[Data], str]
    subject: Callable[[str, str], str]  # (parent subject, item key) -> subject
    affects: Callable[[str, str], str]  # (parent subject, item key) -> who feels it


@dataclass(frozen=True)
class _Section:
    key: Callable[[Data], str]
    affects: Callable[[Data], str]
    summary: Callable[[Data], str]
    nested: Mapping[str, _Nested]


def _joint_member_key(member: Data) -> str:
    return f"{member['tenant']}/{member['user']}" if member.get("user") else str(member["tenant"])


def _rule_scope(rule: Data) -> str:
    match = rule.get("match", {})
    return "jobs of " + "; ".join(f"{k} {_text(v)}" for k, v in match.items()) if match else "every job"


def _tenants_of(project: Data) -> str:
    tenants = sorted({str(m["tenant"]) for m in project.get("members", [])})
    return f"tenants {', '.join(tenants)}" if tenants else "nobody yet"


SECTIONS: Mapping[str, _Section] = {
    "tenants": _Section(
        key=lambda t: str(t["name"]),
        affects=lambda t: f"tenant {t['name']}",
        summary=lambda t: f"projects: {_text([p['name'] for p in t.get('projects', [])]) or '-'}",
        nested={
            "projects": _Nested(
                lambda p: str(p["name"]), lambda parent, k: f"{parent}/{k}", lambda parent, k: f"{parent}/{k}"
            ),
            "members": _Nested(
                lambda m: str(m["user"]),
                lambda parent, k: f"{parent} member {k}",
                lambda parent, k: f"user {parent}/{k}",
            ),
        },
    ),
    "projects": _Section(
        key=lambda p: str(p["name"]),
        affects=_tenants_of,
        summary=lambda p: f"members: {_text([_joint_member_key(m) for m in p.get('members', [])]) or '-'}",
        nested={
            "members": _Nested(
                _joint_member_key,
                lambda parent, k: f"{parent} member {k}",
                lambda parent, k: f"{k} in joint project {parent}",
            )
        },
    ),
    "priority_classes": _Section(
        key=lambda p: str(p["name"]),
        affects=lambda p: f"jobs of priority class {p['name']}",
        summary=lambda p: f"priority {p['priority']}",
        nested={},
    ),
    "sites": _Section(
        key=lambda s: str(s["name"]),
        affects=lambda s: f"jobs placed at {s['name']}",
        summary=lambda s: f"region {s['region']}",
        nested={},
    ),
    "residency": _Section(
        key=lambda r: str(r["classification"]),
        affects=lambda r: f"jobs with {r['classification']} data",
        summary=lambda r: "; ".join(f"{k} -> {_text(v)}" for k, v in r.get("allowed", {}).items()),
        nested={},
    ),
    "rules": _Section(
        key=lambda r: str(r["name"]),
        affects=_rule_scope,
        summary=lambda r: f"{r['effect']}: {r['message']}",
        nested={},
    ),
}


def diff_documents(old: FederationDocument, new: FederationDocument) -> list[Change]:
    """Every difference between two policies, section by section in file order."""
    old_data, new_data = to_data(old), to_data(new)
    changes = [
        Change("metadata", "federation", "changed", path, before, after, "everyone")
        for path, before, after in _leaf_changes(old_data.get("metadata", {}), new_data.get("metadata", {}))
    ]
    for section, how in SECTIONS.items():
        changes += _section(section, how, old_data.get(section, []), new_data.get(section, []))
    changes += _section("network", _NETWORK, _network(old_data), _network(new_data))
    return changes


def _network(document: Data) -> list[Data]:
    """The network section as entries keyed by `entry` ("link a-b" with the pair sorted, as links are the same
    both ways; "default"; "dataset NAME"), sorted: the order links are written in means nothing."""
    network = document.get("network", {})
    entries: list[Data] = []
    for link in network.get("links", []):
        a, b = sorted(link["between"])
        entries.append({"entry": f"link {a}-{b}", **{k: v for k, v in link.items() if k != "between"}})
    if "default" in network:
        entries.append({"entry": "default", **network["default"]})
    entries += [{"entry": f"dataset {name}", **spec} for name, spec in network.get("datasets", {}).items()]
    return sorted(entries, key=lambda e: str(e["entry"]))


def _network_affects(entry: Data) -> str:
    kind, _, name = str(entry["entry"]).partition(" ")
    if kind == "link":
        return f"gangs spanning {name}"
    if kind == "dataset":
        return f"jobs that name dataset {name}"
    return "gangs spanning sites no link names"


_NETWORK = _Section(
    key=lambda e: str(e["entry"]),
    affects=_network_affects,
    summary=lambda e: _text({k: v for k, v in e.items() if k != "entry"}),
    nested={},
)


def _section(name: str, how: _Section, old: list[Data], new: list[Data]) -> list[Change]:
    before = {how.key(e): e for e in old}
    after = {how.key(e): e for e in new}
    changes: list[Change] = []
    for key, entry in after.items():
        if key not in before:
            changes.append(Change(name, key, "added", "", None, how.summary(entry), how.affects(entry)))
    for key, entry in before.items():
        if key not in after:
            changes.append(Change(name, key, "removed", "", how.summary(entry), None, how.affects(entry)))
    for key in (k for k in after if k in before):
        entry_old, entry_new = before[key], after[key]
        affects = how.affects(entry_new)
        plain_old = {k: v for k, v in entry_old.items() if k not in how.nested}
        plain_new = {k: v for k, v in entry_new.items() if k not in how.nested}
        changes += [Change(name, key, "changed", p, a, b, affects) for p, a, b in _leaf_changes(plain_old, plain_new)]
        for list_name, nested in how.nested.items():
            changes += _nested(name, key, nested, entry_old.get(list_name, []), entry_new.get(list_name, []))
    common = [k for k in before if k in after]
    if common != [k for k in after if k in before]:
        changes.append(
            Change(
                name,
                f"(order of {name})",
                "reordered",
                "",
                common,
                [k for k in after if k in before],
                "the first matching rule may now be another one" if name == "rules" else "",
            )
        )
    return changes


def _nested(section: str, parent: str, how: _Nested, old: list[Data], new: list[Data]) -> list[Change]:
    before = {how.key(e): e for e in old}
    after = {how.key(e): e for e in new}
    changes: list[Change] = []
    for key in after.keys() - before.keys():
        changes.append(
            Change(section, how.subject(parent, key), "added", "", None, after[key], how.affects(parent, key))
        )
    for key in before.keys() - after.keys():
        changes.append(
            Change(section, how.subject(parent, key), "removed", "", before[key], None, how.affects(parent, key))
        )
    for key in (k for k in after if k in before):
        changes += [
            Change(section, how.subject(parent, key), "changed", p, a, b, how.affects(parent, key))
            for p, a, b in _leaf_changes(before[key], after[key])
        ]
    return sorted(changes, key=lambda c: (c.subject, c.change))


def _leaves(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every leaf; lists count as one value, mappings are walked into."""
    if isinstance(data, Mapping) and data:
        for key, value in data.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix, data


def _leaf_changes(old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    before, after = dict(_leaves(old)), dict(_leaves(new))
    paths = list(after) + [p for p in before if p not in after]
    return [(p, before.get(p), after.get(p)) for p in paths if before.get(p) != after.get(p)]


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    return str(value)
