"""The accounting model's rules, on synthetic calls and kernel facts."""

from __future__ import annotations

from factories import make_call
from inotrace.accounting import Accounting
from inotrace.records import InotifyCall, InstanceFile, Syscall

G1, G2, UC = 0xA000, 0xB000, 0xC000


def call(syscall: Syscall, group: int, ret: int = 0, wd: int = 0, mask: int = 2, euid: int = 1000) -> InotifyCall:
    return make_call(
        syscall=syscall, uid=euid, euid=euid, ret=ret, fd=3, mask=mask, wd=wd, group=group if ret >= 0 else 0
    )


def fact(group: int, tgid: int, fd: int, instances: int, watches: int, uid: int = 1000) -> InstanceFile:
    return InstanceFile(
        group=group,
        ucounts=UC,
        tgid=tgid,
        fd=fd,
        uid=uid,
        user_ns=1,
        ucount_instances=instances,
        ucount_watches=watches,
        max_instances=128,
        max_watches=8192,
        q_len=0,
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
