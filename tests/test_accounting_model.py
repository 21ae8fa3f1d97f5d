"""The accounting model's rules, on synthetic calls and kernel facts.

`state` is what the BPF side keeps per instance (inotrace.h,
struct inotrace_group_state); the counts come from it, not from records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from factories import make_call
from inotrace.accounting import Accounting
from inotrace.derived import Holder, Lifetime
from inotrace.records import GroupState, InotifyCall, InstanceFile, Syscall

G1, G2, UC = 0xA000, 0xB000, 0xC000


def st(added: int = 0, removed: int = 0, pre_removed: int = 0, floor: int = 0, calls: int = 0, **kw: int) -> GroupState:
    base = {"gen": 1, "inflight": 0} | kw
    return GroupState(added, removed, pre_removed, base["gen"], calls, floor, base["inflight"])


def call(syscall: Syscall, group: int, ret: int = 0, wd: int = 0, mask: int = 2, euid: int = 1000) -> InotifyCall:
    return make_call(
        syscall=syscall, uid=euid, euid=euid, ret=ret, fd=3, mask=mask, wd=wd, group=group if ret >= 0 else 0
    )


def fact(
    group: int,
    tgid: int,
    fd: int,
    instances: int,
    watches: int,
    uid: int = 1000,
    q_len: int = 0,
    state: GroupState | None = None,
) -> InstanceFile:
    return InstanceFile(
        group=group,
        ucounts=UC + uid,
        tgid=tgid,
        fd=fd,
        uid=uid,
        user_ns=1,
        ucount_instances=instances,
        ucount_watches=watches,
        max_instances=128,
        max_watches=8192,
        q_len=q_len,
        max_events=16384,
        state=state,
    )


def never(instances: list) -> list:
    raise AssertionError(f"fdinfo must not be read here: {instances}")


def by_fd(table: dict) -> Callable[[list], list]:
    """A reader answering from {(tgid, fd): watches}, trying holders in order."""

    def read(instances: list) -> list:
        return [next((table[h] for h in holders if table.get(h) is not None), None) for holders in instances]

    return read


def kernel(*reads: list[InstanceFile]) -> Callable[[], list[InstanceFile]]:
    """The iterator read again: each call returns the next of `reads` (the last one repeats)."""
    seq = list(reads)

    def read() -> list[InstanceFile]:
        return seq.pop(0) if len(seq) > 1 else seq[0]

    return read


def test_counts_come_from_the_kernel_side_not_from_records() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    # only the init record arrived; the kernel side counted 3 new, 1 removed
    files = [fact(G1, 10, 3, 1, 2, state=st(added=3, removed=1, calls=4))]
    acc.reconcile(files, never, kernel(files))
    assert acc.instances[G1].count == 2
    assert acc.drift == {"instances": 0, "watches": 0} and not +acc.corrections


def test_records_keep_the_wd_detail() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    for wd in (1, 2, 3):
        acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=wd))
    acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=2, mask=4))  # same inode again
    acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=-28))  # ENOSPC: nothing
    acc.apply(call(Syscall.INOTIFY_RM_WATCH, G1, ret=0, wd=1))
    acc.apply(call(Syscall.INOTIFY_RM_WATCH, G1, ret=-22, wd=9))
    assert acc.instances[G1].watches == {2: 4, 3: 2}


def test_born_instance_found_before_its_record_needs_no_fdinfo() -> None:
    acc = Accounting()
    files = [fact(G1, 10, 3, 1, 5, state=st(added=5))]  # floor 0: the kernel side saw its init
    acc.reconcile(files, never, kernel(files))
    assert acc.instances[G1].count == 5 and not +acc.corrections


def test_shared_instance_is_one_instance_owned_by_lowest_holder() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    files = [fact(G1, 20, 3, 1, 1, state=st(added=1)), fact(G1, 11, 7, 1, 1, state=st(added=1))]
    acc.reconcile(files, never, kernel(files))
    assert len(acc.instances) == 1 and acc.instances[G1].owner == 11
    assert acc.instances[G1].holders == ((11, 7), (20, 3))


def test_instance_gone_from_every_fd_table_is_destroyed() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.apply(call(Syscall.INOTIFY_INIT1, G2, ret=4))
    files = [fact(G2, 10, 4, 1, 0, state=st())]
    acc.reconcile(files, never, kernel(files))
    assert set(acc.instances) == {G2} and acc.destroyed == [(G1, None)]


def test_seeded_watches_below_the_floor_are_counted_once_from_fdinfo() -> None:
    acc = Accounting()
    # older than the probes: wds 1, 2 predate the state (floor 3), 3 and 4 were counted by it
    files = [fact(G1, 10, 3, 1, 4, state=st(added=2, floor=3, calls=2))]
    acc.reconcile(files, by_fd({(10, 3): {1: 2, 2: 2, 3: 2, 4: 2}}), kernel(files), seeding=True)
    inst = acc.instances[G1]
    assert (inst.pre, inst.count) == (2, 4) and not +acc.corrections
    # later calls: counted by the state alone
    files = [fact(G1, 10, 3, 1, 5, state=st(added=4, floor=3, pre_removed=1, calls=5))]
    acc.reconcile(files, never, kernel(files))
    assert inst.count == 5 and acc.drift["watches"] == 0


def test_seeded_instance_without_state_gets_one_when_called() -> None:
    acc = Accounting()
    files = [fact(G1, 10, 3, 1, 2)]
    acc.reconcile(files, by_fd({(10, 3): {1: 2, 2: 2}}), kernel(files), seeding=True)
    assert acc.instances[G1].count == 2
    files = [fact(G1, 10, 3, 1, 3, state=st(added=1, floor=3, calls=1, gen=9))]
    acc.reconcile(files, never, kernel(files))
    assert acc.instances[G1].count == 3 and not +acc.corrections


def test_kernel_removal_is_corrected_and_counted() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    for wd in (1, 2, 3):
        acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=wd, mask=0x100))
    state = st(added=3, calls=3)
    acc.reconcile([fact(G1, 10, 3, 1, 3, state=state)], never, kernel([]))
    # wd 2's directory was deleted: the kernel's count says 2, no call ran
    files = [fact(G1, 10, 3, 1, 2, state=state)]
    acc.reconcile(files, by_fd({(10, 3): {1: 0x100, 3: 0x100}}), kernel(files), now_ns=7)
    inst = acc.instances[G1]
    assert inst.count == 2 and inst.watches == {1: 0x100, 3: 0x100}
    assert acc.corrections["watch_removed_by_kernel"] == 1 and acc.corrections["watch_missed"] == 0
    assert [(e.kind, e.wd, e.mask, e.ts_ns) for e in acc.events] == [(Lifetime.WATCH_REMOVED, 2, 0x100, 7)]
    assert acc.drift == {"instances": 0, "watches": 0}


def test_no_fdinfo_read_while_a_call_is_in_flight() -> None:
    """A burst: the kernel's counter runs ahead of the exits by the calls in flight."""
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    files = [fact(G1, 10, 3, 1, 101, state=st(added=100, calls=100, inflight=1))]
    acc.reconcile(files, never, kernel(files))
    assert acc.instances[G1].count == 100 and not +acc.corrections


def test_no_fdinfo_read_when_calls_ran_between_two_reads() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    first = [fact(G1, 10, 3, 1, 101, state=st(added=100, calls=100))]
    again = [fact(G1, 10, 3, 1, 103, state=st(added=103, calls=103))]
    acc.reconcile(first, never, kernel(again))
    assert not +acc.corrections


def test_a_call_on_one_instance_voids_the_whole_users_comparison() -> None:
    """Ten watchers of one user mid-burst: the user's counter is read at another
    moment than each instance, so when it differs and one instance moved since,
    none is read (reading the quiet ones was a 100k-line fdinfo each, each sample)."""
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.apply(call(Syscall.INOTIFY_INIT1, G2, ret=4))
    first = [fact(G1, 10, 3, 2, 201, state=st(added=100, calls=100)), fact(G2, 10, 4, 2, 201, state=st(added=100))]
    again = [fact(G1, 10, 3, 2, 202, state=st(added=101, calls=101)), fact(G2, 10, 4, 2, 202, state=st(added=100))]
    acc.reconcile(first, never, kernel(again))
    assert [acc.instances[g].count for g in (G1, G2)] == [100, 100] and not +acc.corrections


def test_a_kernel_removal_beside_a_busy_sibling_is_still_found() -> None:
    """The difference (3) is more than the busy instance's one call can explain:
    the quiet instance is read, and its kernel removals counted."""
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.apply(call(Syscall.INOTIFY_INIT1, G2, ret=4))
    quiet = st(added=10, calls=10)
    acc.reconcile(
        [fact(G1, 10, 3, 2, 110, state=st(added=100, calls=100)), fact(G2, 10, 4, 2, 110, state=quiet)],
        never,
        kernel([]),
    )
    first = [fact(G1, 10, 3, 2, 107, state=st(added=100, calls=100)), fact(G2, 10, 4, 2, 107, state=quiet)]
    again = [fact(G1, 10, 3, 2, 108, state=st(added=101, calls=101)), fact(G2, 10, 4, 2, 108, state=quiet)]
    truth = {(10, 4): {wd: 2 for wd in range(1, 8)}}
    acc.reconcile(first, by_fd(truth), kernel(again, again))
    assert acc.instances[G2].count == 7 and acc.corrections["watch_removed_by_kernel"] == 3


def test_a_call_during_the_fdinfo_read_voids_it() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    files = [fact(G1, 10, 3, 1, 1, state=st(added=2, calls=2))]
    after = [fact(G1, 10, 3, 1, 2, state=st(added=3, calls=3))]
    acc.reconcile(files, by_fd({(10, 3): {1: 2}}), kernel(files, after))
    assert acc.instances[G1].count == 2 and not +acc.corrections  # left for a quiet sample


def test_instance_the_kernel_side_never_saw_born_is_missed() -> None:
    acc = Accounting()
    acc.reconcile([], never, kernel([]), seeding=True)
    files = [fact(G1, 10, 3, 1, 2)]  # no state: not born under the probes
    acc.reconcile(files, by_fd({(10, 3): {1: 2, 2: 2}}), kernel(files))
    assert acc.instances[G1].count == 2 and acc.corrections["instance_missed"] == 1


def test_reused_group_memory_starts_a_new_lifetime() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=1))
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=5))  # old one died, its memory reused
    assert acc.instances[G1].watches == {}
    assert [(e.kind, e.watches) for e in acc.events] == [(Lifetime.INSTANCE_DESTROYED, 1)]


def test_new_gen_made_at_init_is_a_new_lifetime_between_samples() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.reconcile([fact(G1, 10, 3, 1, 4, state=st(added=4, gen=1))], never, kernel([]))
    files = [fact(G1, 12, 3, 1, 1, state=st(added=1, gen=2))]
    acc.reconcile(files, never, kernel(files), now_ns=9)
    assert acc.instances[G1].count == 1 and acc.instances[G1].owner == 12
    assert [(e.kind, e.pid, e.watches, e.ts_ns) for e in acc.events] == [(Lifetime.INSTANCE_DESTROYED, 10, 4, 9)]


def test_untracked_instances_are_counted() -> None:
    acc = Accounting(max_instances=1)
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.apply(call(Syscall.INOTIFY_INIT1, G2, ret=4))
    assert set(acc.instances) == {G1} and acc.overflow == 1


def test_drift_is_reported_when_truth_cannot_be_read() -> None:
    acc = Accounting()
    files = [fact(G1, 10, 3, 1, 4)]
    acc.reconcile(files, by_fd({}), kernel(files), seeding=True)
    assert acc.drift == {"instances": 0, "watches": 4}


def test_queue_overflow_is_one_event_per_episode() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    for q_len in (10, 16385, 16385, 3, 16385):
        files = [fact(G1, 10, 3, 1, 0, q_len=q_len, state=st())]
        acc.reconcile(files, never, kernel(files))
    kinds = [(e.kind, e.q_len, e.max_events) for e in acc.events]
    assert kinds == [(Lifetime.QUEUE_OVERFLOW, 16385, 16384)] * 2
    acc.name_events(lambda ev: replace(ev, comm=b"watcher"))
    assert len(acc.take_events()) == 2 and acc.events == []
    assert acc.overflows == {(b"watcher", 1000): 2}  # counted by the model, by owner comm and uid


def test_init_already_found_by_reconcile_keeps_it() -> None:
    acc = Accounting()
    # reconciling read the kernel at t=100 and found G1 (its init record still in flight)
    files = [fact(G1, 10, 3, 1, 1, state=st(added=1))]
    acc.reconcile(files, never, kernel(files), now_ns=100)
    acc.apply(make_call(syscall=Syscall.INOTIFY_INIT1, ts_ns=90, ret=3, group=G1, euid=1000))
    assert acc.instances[G1].count == 1 and acc.events == []
    # a later init of the same group is a reuse: the old lifetime ended
    acc.apply(make_call(syscall=Syscall.INOTIFY_INIT1, ts_ns=120, ret=3, group=G1, euid=1000))
    assert acc.instances[G1].state is None
    assert [(e.kind, e.watches, e.ts_ns) for e in acc.events] == [(Lifetime.INSTANCE_DESTROYED, 1, 120)]


def test_top_holders_of_a_user() -> None:
    acc = Accounting()
    for group, fd in ((G1, 3), (G2, 4), (0xD000, 5)):
        acc.apply(call(Syscall.INOTIFY_INIT1, group, ret=fd))
    files = [
        fact(G1, 30, 3, 3, 4, state=st(added=3)),
        fact(G2, 20, 4, 3, 4, state=st(added=1)),
        fact(0xD000, 20, 5, 3, 4, state=st()),
        fact(0xE000, 40, 3, 1, 0, uid=7, state=st()),
    ]
    acc.reconcile(files, never, kernel(files))
    assert acc.top_holders(1000, "watches") == (Holder(30, 1, 3), Holder(20, 2, 1))
    assert acc.top_holders(1000, "instances", n=1) == (Holder(20, 2, 1),)
    assert acc.top_holders(7, "watches") == (Holder(40, 1, 0),)
    user = acc.user(1000)
    assert user is not None and (user.watches, user.max_watches) == (4, 8192)
    assert acc.used(1000, "watches") == 4 and acc.used(1000, "instances") == 3


def test_pre_part_is_exact_while_the_watcher_keeps_adding() -> None:
    """Seeding during a burst: adds move `calls`, not the pre-floor count."""
    acc = Accounting()
    files = [fact(G1, 10, 3, 1, 12, state=st(added=10, floor=3, calls=10, inflight=1))]
    after = [fact(G1, 10, 3, 1, 15, state=replace(files[0].state, added=13, calls=13))]  # type: ignore[type-var]
    acc.reconcile(files, by_fd({(10, 3): {1: 2, 2: 2, **{w: 2 for w in range(3, 14)}}}), kernel(after), seeding=True)
    inst = acc.instances[G1]
    assert inst.known and inst.pre == 2
    acc.reconcile(after, never, kernel(after))
    assert inst.count == 15


# The ring's positions (reconcile's `ring`): records of calls that were over
# at a read lie below the producer position read just after it; the model
# has applied every record below its second value.


def test_a_kernel_removal_waits_for_the_records_of_the_calls_before_it() -> None:
    """Three add_watch calls, then the kernel removes wd 3, all before a
    sample whose ring still holds the calls' records: settled then, wd 3
    would go unnamed and come back from its late record. The sample leaves
    it; the next one, with the records applied, names wd 3."""
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.reconcile([fact(G1, 10, 3, 1, 0, state=st())], never, kernel([]), ring=(100, 100))
    files = [fact(G1, 10, 3, 1, 2, state=st(added=3, calls=3))]
    truth = by_fd({(10, 3): {1: 0x100, 2: 0x100}})
    acc.reconcile(files, truth, kernel(files), ring=(400, 100))
    assert acc.instances[G1].count == 3 and acc.events == [] and acc.corrections["watch_removed_by_kernel"] == 0
    for wd in (1, 2, 3):
        acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=wd, mask=0x100))
    acc.reconcile(files, truth, kernel(files), now_ns=9, ring=(400, 400))
    inst = acc.instances[G1]
    assert inst.count == 2 and inst.watches == {1: 0x100, 2: 0x100}
    assert [(e.kind, e.wd, e.mask, e.ts_ns) for e in acc.events] == [(Lifetime.WATCH_REMOVED, 3, 0x100, 9)]
    assert acc.corrections["watch_removed_by_kernel"] == 1 and acc.drift == {"instances": 0, "watches": 0}


def test_a_wd_its_own_rm_watch_removed_is_never_named_the_kernels() -> None:
    """rm_watch(wd 2), then the kernel removes wd 1, the rm_watch's record
    still in the ring: only wd 1 is the kernel's."""
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    for wd in (1, 2):
        acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=wd))
    acc.reconcile([fact(G1, 10, 3, 1, 2, state=st(added=2, calls=2))], never, kernel([]), ring=(100, 100))
    files = [fact(G1, 10, 3, 1, 0, state=st(added=2, removed=1, calls=3))]
    acc.reconcile(files, by_fd({(10, 3): {}}), kernel(files), ring=(200, 100))
    assert acc.events == []
    acc.apply(call(Syscall.INOTIFY_RM_WATCH, G1, wd=2))
    acc.reconcile(files, by_fd({(10, 3): {}}), kernel(files), ring=(200, 200))
    assert [(e.kind, e.wd) for e in acc.events] == [(Lifetime.WATCH_REMOVED, 1)]
    assert acc.corrections["watch_removed_by_kernel"] == 1


def test_an_instance_quiet_since_an_earlier_sample_is_settled_while_others_fill_the_ring() -> None:
    """A burst elsewhere keeps records coming: a quiet instance needs only
    the records from before it went quiet, not the burst's."""
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    for wd in (1, 2):
        acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=wd))
    state = st(added=2, calls=2)
    acc.reconcile([fact(G1, 10, 3, 1, 2, state=state)], never, kernel([]), ring=(100, 100))
    files = [fact(G1, 10, 3, 1, 1, state=state)]
    acc.reconcile(files, by_fd({(10, 3): {1: 2}}), kernel(files), ring=(900, 500))
    assert [(e.kind, e.wd) for e in acc.events] == [(Lifetime.WATCH_REMOVED, 2)]


def test_a_call_in_flight_at_the_read_waits_for_a_quiet_one() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=1))
    acc.reconcile([fact(G1, 10, 3, 1, 1, state=st(added=1, calls=1))], never, kernel([]), ring=(100, 100))
    busy = [fact(G1, 10, 3, 1, 0, state=st(added=1, calls=2, inflight=1))]
    acc.reconcile(busy, never, kernel(busy), ring=(100, 100))
    assert acc.instances[G1].quiet_since is None
