"""Remote commands and releases page like every other listing (issue 13), on both repositories: several
pages in a stable order, nothing twice, no empty last page, cursors refused outside their listing; and a
command's runs are counted per state by the store (command_counts), so no view lists a command's runs."""

from __future__ import annotations

import pytest

from chalicelib.domain import commands as dc
from chalicelib.domain.errors import ConcurrentUpdate, Conflict, InvalidInput
from chalicelib.domain.models import CommandRun, Release, RemoteCommand, bumped

COMMANDS = 5  # cmd-0..cmd-4, created at times 4, 3, 2, 1, 0 (so creation order is not id order)
DEVICES = 7  # dev-0..dev-6: every command runs on every device


def command(n: int, created: float) -> RemoteCommand:
    epns = tuple(f"dev-{d}" for d in range(DEVICES))
    return RemoteCommand(command_id=f"cmd-{n:04d}", type="reboot", envelope={"command": {}}, key_id="k",
                         targets=epns, target_spec={"devices": list(epns)}, created_at=created,
                         expires_at=created + 3600, timeout=30)


def run(cmd: RemoteCommand, epn: str) -> CommandRun:
    return CommandRun(command_id=cmd.command_id, epn=epn, state=dc.QUEUED, created_at=cmd.created_at,
                      last_activity=cmd.created_at, expires_at=cmd.expires_at, timeout=cmd.timeout)


@pytest.fixture
def stored(repo):
    made = [command(n, float(COMMANDS - 1 - n)) for n in range(COMMANDS)]
    for cmd in made:
        repo.create_command(cmd, [run(cmd, f"dev-{d}") for d in reversed(range(DEVICES))])
    for n in range(COMMANDS):  # two releases share a creation time: the id breaks the tie
        repo.create_release(Release(release_id=f"demo@1.0.{n}:m:stable", app="demo", app_version=f"1.0.{n}",
                                    model="m", channel="stable", upload_id=f"up-{n}", created_at=float(n // 2)))
    return repo


def _walk(fetch, limit):
    """Every item of a paged listing, page by page; asserts no page is larger than asked, none empty."""
    items, cursor, pages = [], None, 0
    while True:
        page = fetch(limit, cursor)
        assert len(page.items) <= limit
        assert page.items or (pages == 0 and page.next_cursor is None)
        items.extend(page.items)
        pages += 1
        if page.next_cursor is None:
            return items, pages
        cursor = page.next_cursor


BY_CREATION = [f"cmd-{n:04d}" for n in reversed(range(COMMANDS))]
LISTINGS = {
    "commands": (lambda r: r.commands_page, lambda c: c.command_id, BY_CREATION),
    "runs of a command": (lambda r: lambda lim, cur: r.command_runs_page("cmd-0002", lim, cur), lambda x: x.epn,
                          [f"dev-{d}" for d in range(DEVICES)]),
    "runs of a device": (lambda r: lambda lim, cur: r.device_command_runs_page("dev-3", lim, cur),
                         lambda x: x.command_id, BY_CREATION),
    "releases": (lambda r: r.releases_page, lambda x: x.release_id, [f"demo@1.0.{n}:m:stable" for n in range(5)]),
    "runs of an unknown command": (lambda r: lambda lim, cur: r.command_runs_page("cmd-9999", lim, cur),
                                   lambda x: x.epn, []),
}


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
@pytest.mark.parametrize("name", sorted(LISTINGS))
def test_command_and_release_listings_page_in_a_stable_order(stored, name, limit):
    make, ident, order = LISTINGS[name]
    items, pages = _walk(make(stored), limit)
    assert [ident(i) for i in items] == order
    assert _walk(make(stored), limit)[0] == items  # stable
    assert pages == max(1, -(-len(order) // limit))  # no empty last page


@pytest.mark.parametrize("tamper", ["", "!!!", "e30", "eyJwIjoiQ09NTUFORFMifQ", "a" * 3000])
def test_tampered_or_foreign_cursors_are_refused(stored, tamper):
    foreign = {name: make(stored)(1, None).next_cursor for name, (make, _, _) in LISTINGS.items()
               if name != "runs of an unknown command"}
    assert all(foreign.values())
    for name, (make, _, _) in LISTINGS.items():
        for cursor in [tamper] + [c for other, c in foreign.items() if other != name]:
            with pytest.raises(InvalidInput):
                make(stored)(1, cursor)
    with pytest.raises(InvalidInput):  # another command's runs: another listing
        stored.command_runs_page("cmd-0001", 1, foreign["runs of a command"])


def test_runs_are_counted_per_state_as_they_move(stored):
    assert stored.command_counts("cmd-0000") == {dc.QUEUED: DEVICES}
    first = stored.get_command_run("cmd-0000", "dev-0")
    moved = bumped(first, state=dc.RUNNING)
    stored.save_command_run(moved)
    stored.save_command_run(bumped(moved, state=dc.SUCCEEDED))
    stored.save_command_run(bumped(stored.get_command_run("cmd-0000", "dev-1"), reason="same state"))
    with pytest.raises(ConcurrentUpdate):  # a stale write moves nothing
        stored.save_command_run(bumped(first, state=dc.FAILED))
    counts = {k: v for k, v in stored.command_counts("cmd-0000").items() if v}
    assert counts == {dc.QUEUED: DEVICES - 1, dc.SUCCEEDED: 1}
    assert stored.command_counts("cmd-0001") == {dc.QUEUED: DEVICES}  # only its own command's
    assert stored.command_counts("cmd-9999") == {}
    with pytest.raises(Conflict):  # a replayed submission changes no counter
        stored.create_command(command(0, 0.0), [run(command(0, 0.0), "dev-0")])
    assert {k: v for k, v in stored.command_counts("cmd-0000").items() if v} == counts
