"""docs/api-python.md documents every public name of tlsrekey and tlsrekey.asyncio,
and nothing that is not there: each name has a heading of its own, compared with
the modules' contents (a new method fails this test until it is documented, a
removed one until its heading goes). Also the stats keys and the console's options,
listed in tables between <!-- names: ... --> markers, and the example files the docs
point to."""
import pathlib
import re

import pytest

import tlsrekey
import tlsrekey.asyncio
from tlsrekey import console

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
API = DOCS / "api-python.md"

HEADING = re.compile(r"^#{2,6}\s+`?(tlsrekey(?:\.\w+)+)", re.M)
TABLE = re.compile(r"<!-- names: (?P<what>[\w ]+) -->\n(?P<body>.*?)<!-- /names -->", re.S)

pytestmark = pytest.mark.skipif(not API.exists(),
                                reason="runs from a source tree only (reads docs/)")


def ours(obj):
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "tlsrekey"


def class_members(cls, public_classes):
    """Public attributes a class defines itself or gets from a private base of ours
    (tlsrekey.Context's C half); not those of a public base, documented there."""
    inherited = set()
    for base in cls.__mro__[1:]:
        if base in public_classes:
            inherited |= set(vars(base))
    names = set()
    for klass in cls.__mro__:
        if klass is cls or (ours(klass) and klass not in public_classes):
            names |= {n for n in vars(klass) if not n.startswith("_")}
    return names - inherited


def module_names(module):
    prefix = module.__name__
    objects = {name: getattr(module, name) for name in module.__all__}
    public_classes = {o for o in objects.values() if isinstance(o, type)}
    names = {f"{prefix}.{name}" for name in objects}
    for name, obj in objects.items():
        if isinstance(obj, type):
            names |= {f"{prefix}.{name}.{m}" for m in class_members(obj, public_classes)}
    return names


def public_names():
    # the submodule is a public name of the package too
    return module_names(tlsrekey) | module_names(tlsrekey.asyncio) | {"tlsrekey.asyncio"}


def documented_names():
    found = HEADING.findall(API.read_text())
    dupes = sorted({n for n in found if found.count(n) > 1})
    assert dupes == [], "documented twice in %s: %s" % (API.name, dupes)
    return {n for n in found if not any(part.startswith("_") for part in n.split("."))}


def table(what):
    for m in TABLE.finditer(API.read_text()):
        if m.group("what") == what:
            return m.group("body")
    raise AssertionError("no <!-- names: %s --> table in %s" % (what, API.name))


def test_every_public_name_is_documented():
    missing = sorted(public_names() - documented_names())
    assert missing == [], "public but not in docs/api-python.md: %s" % missing


def test_every_documented_name_exists():
    stale = sorted(documented_names() - public_names())
    assert stale == [], "in docs/api-python.md but not in the modules: %s" % stale


def test_the_documented_stats_keys_are_the_counters():
    client, server = tlsrekey.pair()
    try:
        actual = set(client.stats)
    finally:
        client.close()
        server.close()
    documented = set(re.findall(r"^\| `(\w+)`", table("stats"), re.M))
    assert sorted(actual - documented) == [], "counters missing from the stats table"
    assert sorted(documented - actual) == [], "stats table names counters that do not exist"


def test_the_documented_console_options_are_the_parsers():
    parser = console.build_parser()
    actual = set()
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            for a in sub._actions:
                actual |= {o for o in a.option_strings if o.startswith("--") and o != "--help"}
    documented = set(re.findall(r"`(--[\w-]+)`", table("console options")))
    assert sorted(actual - documented) == [], "console options missing from the docs"
    assert sorted(documented - actual) == [], "the docs name console options that do not exist"


def test_examples_the_docs_mention_exist():
    for doc in DOCS.glob("*.md"):
        for ref in re.findall(r"examples/([\w.*]+)", doc.read_text()):
            ref = ref.rstrip(".")
            if ref:
                assert list((ROOT / "examples").glob(ref)), "%s mentions missing examples/%s" \
                    % (doc.name, ref)


def test_the_guide_explains_the_concepts_it_promises():
    guide = (DOCS / "guide.md").read_text().lower()
    for topic in ("key update", "renegotiation", "pending", "lazy reply", "reads can write",
                  "hellorequest", "update_requested"):
        assert topic in guide, "docs/guide.md does not explain %r" % topic
