"""The accounting model's rules, on synthetic calls and kernel facts."""

from __future__ import annotations

from factories import make_call
from inotrace.accounting import Accounting
from inotrace.lifetime import Holder, Lifetime
from inotrace.records import InotifyCall, InstanceFile, Syscall

G1, G2, UC = 0xA000, 0xB000, 0xC000


def call(syscall: Syscall, group: int, ret: int = 0, wd: int = 0, mask: int = 2, euid: int = 1000) -> InotifyCall:
    return make_call(
        syscall=syscall, uid=euid, euid=euid, ret=ret, fd=3, mask=mask, wd=wd, group=group if ret >= 0 else 0
    )


def fact(group: int, tgid: int, fd: int, instances: int, watches: int, uid: int = 1000, q_len: int = 0) -> InstanceFile:
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
    )


def never(instances: list) -> list:
    assert not instances, "fdinfo must not be read when the counts agree"
    return []


def by_fd(table: dict) -> object:
    """A reader answering from {(tgid, fd): watches}, trying holders in order."""

    def read(instances: list) -> list:
        return [next((table[h] for h in holders if table.get(h) is not None), None) for holders in instances]

    return read


def test_new_wd_is_a_watch_existing_wd_a_modification() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    for wd in (1, 2, 3):
        acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=wd))
    acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=2, mask=4))  # same inode again
    acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=-28))  # ENOSPC: nothing
    acc.apply(call(Syscall.INOTIFY_RM_WATCH, G1, ret=0, wd=1))
    acc.apply(call(Syscall.INOTIFY_RM_WATCH, G1, ret=-22, wd=9))
    assert acc.instances[G1].watches == {2: 4, 3: 2}
    acc.reconcile([fact(G1, 10, 3, 1, 2)], never)
    assert acc.drift == {"instances": 0, "watches": 0} and not +acc.corrections


def test_shared_instance_is_one_instance_owned_by_lowest_holder() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=1))
    acc.reconcile([fact(G1, 20, 3, 1, 1), fact(G1, 11, 7, 1, 1)], never)
    assert len(acc.instances) == 1 and acc.instances[G1].owner == 11
    assert acc.instances[G1].holders == ((11, 7), (20, 3))


def test_instance_gone_from_every_fd_table_is_destroyed() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.apply(call(Syscall.INOTIFY_INIT1, G2, ret=4))
    acc.reconcile([fact(G2, 10, 4, 1, 0)], never)
    assert set(acc.instances) == {G2}


def test_kernel_removal_is_corrected_and_counted() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    for wd in (1, 2, 3):
        acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=wd))
    # wd 2's directory was deleted: the kernel's count says 2
    acc.reconcile([fact(G1, 10, 3, 1, 2)], by_fd({(10, 3): {1: 2, 3: 2}}))
    assert acc.instances[G1].watches == {1: 2, 3: 2}
    assert acc.corrections["watch_removed_by_kernel"] == 1 and acc.corrections["watch_missed"] == 0
    assert acc.drift == {"instances": 0, "watches": 0}


def test_seeding_is_not_a_correction_but_a_missed_instance_is() -> None:
    acc = Accounting()
    acc.reconcile([fact(G1, 10, 3, 1, 2)], by_fd({(10, 3): {1: 2, 2: 2}}), seeding=True)
    assert acc.instances[G1].watches == {1: 2, 2: 2} and not +acc.corrections
    acc.reconcile([fact(G1, 10, 3, 2, 3), fact(G2, 10, 4, 2, 3)], by_fd({(10, 4): {1: 2}, (10, 3): {1: 2, 2: 2}}))
    assert acc.corrections["instance_missed"] == 1 and acc.corrections["watch_missed"] == 1


def test_reused_group_memory_starts_a_new_lifetime() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=1))
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=5))  # old one died, its memory reused
    assert acc.instances[G1].watches == {}


def test_untracked_instances_are_counted() -> None:
    acc = Accounting(max_instances=1)
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.apply(call(Syscall.INOTIFY_INIT1, G2, ret=4))
    assert set(acc.instances) == {G1} and acc.overflow == 1


def test_drift_is_reported_when_truth_cannot_be_read() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.reconcile([fact(G1, 10, 3, 1, 4)], by_fd({}))
    assert acc.drift == {"instances": 0, "watches": 4}


def test_lifetime_events_destroyed_and_removed_by_kernel() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    acc.apply(call(Syscall.INOTIFY_INIT1, G2, ret=4))
    for wd in (1, 2):
        acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G1, ret=wd, mask=0x100))
    acc.apply(call(Syscall.INOTIFY_ADD_WATCH, G2, ret=1))
    acc.reconcile([fact(G1, 10, 3, 2, 3), fact(G2, 10, 4, 2, 3)], never, now_ns=5)
    assert acc.events == []
    # wd 2's directory was removed; then G2's last fd was closed
    acc.reconcile([fact(G1, 10, 3, 1, 1)], by_fd({(10, 3): {1: 0x100}}), now_ns=7)
    got = [(e.kind, e.group, e.pid, e.uid, e.wd, e.mask, e.watches, e.ts_ns) for e in acc.events]
    assert got == [
        (Lifetime.INSTANCE_DESTROYED, G2, 10, 1000, -1, 0, 1, 7),
        (Lifetime.WATCH_REMOVED, G1, 10, 1000, 2, 0x100, 0, 7),
    ]


def test_queue_overflow_is_one_event_per_episode() -> None:
    acc = Accounting()
    acc.apply(call(Syscall.INOTIFY_INIT1, G1, ret=3))
    for q_len in (10, 16385, 16385, 3, 16385):
        acc.reconcile([fact(G1, 10, 3, 1, 0, q_len=q_len)], never)
    kinds = [(e.kind, e.q_len, e.max_events) for e in acc.events]
    assert kinds == [(Lifetime.QUEUE_OVERFLOW, 16385, 16384)] * 2


def test_init_already_found_by_reconcile_keeps_its_watches() -> None:
    acc = Accounting()
    # reconciling read the kernel at t=100 and found G1 (its init record still in flight)
    acc.reconcile([fact(G1, 10, 3, 1, 1)], by_fd({(10, 3): {1: 2}}), now_ns=100)
    acc.apply(make_call(syscall=Syscall.INOTIFY_INIT1, ts_ns=90, ret=3, group=G1, euid=1000))
    assert acc.instances[G1].watches == {1: 2} and acc.events == []
    # a later init of the same group is a reuse: the old lifetime ended
    acc.apply(make_call(syscall=Syscall.INOTIFY_INIT1, ts_ns=120, ret=3, group=G1, euid=1000))
    assert acc.instances[G1].watches == {}
    assert [(e.kind, e.watches, e.ts_ns) for e in acc.events] == [(Lifetime.INSTANCE_DESTROYED, 1, 120)]


def test_top_holders_of_a_user() -> None:
    acc = Accounting()
    for group, fd, watches in ((G1, 3, 3), (G2, 4, 1), (0xD000, 5, 0)):
        acc.apply(call(Syscall.INOTIFY_INIT1, group, ret=fd))
        for wd in range(1, watches + 1):
            acc.apply(call(Syscall.INOTIFY_ADD_WATCH, group, ret=wd))
    acc.reconcile(
        [fact(G1, 30, 3, 3, 4), fact(G2, 20, 4, 3, 4), fact(0xD000, 20, 5, 3, 4), fact(0xE000, 40, 3, 1, 0, uid=7)],
        by_fd({(40, 3): {}}),
    )
    assert acc.top_holders(1000, "watches") == (Holder(30, 1, 3), Holder(20, 2, 1))
    assert acc.top_holders(1000, "instances", n=1) == (Holder(20, 2, 1),)
    assert acc.top_holders(7, "watches") == (Holder(40, 1, 0),)
    user = acc.user(1000)
    assert user is not None and (user.watches, user.max_watches) == (4, 8192)
