#!/usr/bin/env python3
"""Runs a command under the kernel-side restrictions of systemd/vidgest.service, for machines
where the unit cannot run under a real systemd (systemd not PID 1: containers, CI).

Applies, then execs the command:
  NoNewPrivileges=yes            prctl(PR_SET_NO_NEW_PRIVS)
  MemoryDenyWriteExecute=yes     prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) (Linux >= 6.3: no
                                 W+X mapping, no mprotect adding PROT_EXEC; what systemd's
                                 seccomp filter refuses)
  SystemCallFilter=@system-service ~@privileged, SystemCallErrorNumber=EPERM,
  SystemCallArchitectures=native
                                 a libseccomp allow list of exactly the sets
                                 `systemd-analyze syscall-filter` prints for this systemd
  RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
                                 socket(2) allowed for those families only
  LockPersonality=yes            personality(2) only with the current persona

User, capabilities and file system views are applied around it by systemd/sandbox-check.sh
(setpriv, unshare). Usage: sandbox-exec.py COMMAND [ARGS...]
"""

import ctypes
import ctypes.util
import os
import socket
import subprocess
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4


def scmp_act_errno(errno):
    return 0x00050000 | (errno & 0xFFFF)


class ScmpArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def expand(group, sets, seen):
    """Syscall names of `group` (@set or name), following nested sets."""
    if not group.startswith("@"):
        return {group}
    if group in seen:
        return set()
    seen.add(group)
    out = set()
    for item in sets.get(group, []):
        out |= expand(item, sets, seen)
    return out


def syscall_sets():
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    sets, current = {}, None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if not line.startswith(" ") and s.startswith("@"):
            current = s
            sets[current] = []
        elif current:
            sets[current].append(s)
    return sets


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    libc = ctypes.CDLL(None, use_errno=True)
    seccomp = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    seccomp.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ScmpArgCmp),
    ]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]

    sets = syscall_sets()
    allowed = expand("@system-service", sets, set()) - expand("@privileged", sets, set())
    # Filtered below by argument.
    allowed -= {"socket", "personality"}

    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_MDWE) failed: needs Linux >= 6.3")

    ctx = seccomp.seccomp_init(scmp_act_errno(1))  # EPERM, as SystemCallErrorNumber=EPERM
    if not ctx:
        sys.exit("seccomp_init failed")
    added = 0
    for name in sorted(allowed):
        nr = seccomp.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            continue  # not a syscall of this architecture
        rc = seccomp.seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0)
        if rc != 0:
            sys.exit(f"seccomp_rule_add {name}: {rc}")
        added += 1
    sock = seccomp.seccomp_syscall_resolve_name(b"socket")
    for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
        cmp = ScmpArgCmp(0, SCMP_CMP_EQ, family, 0)
        if seccomp.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, sock, 1, ctypes.byref(cmp)) != 0:
            sys.exit("seccomp socket rule failed")
    pers = seccomp.seccomp_syscall_resolve_name(b"personality")
    current = libc.personality(0xFFFFFFFF)
    for persona in (current, 0xFFFFFFFF):  # set the current one, or query
        cmp = ScmpArgCmp(0, SCMP_CMP_EQ, persona, 0)
        if seccomp.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, pers, 1, ctypes.byref(cmp)) != 0:
            sys.exit("seccomp personality rule failed")
    if seccomp.seccomp_load(ctx) != 0:
        sys.exit("seccomp_load failed")
    print(
        f"sandbox: {added} system calls allowed (@system-service ~@privileged), "
        "socket: AF_UNIX AF_INET AF_INET6, MDWE on, no new privileges",
        file=sys.stderr,
        flush=True,
    )
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
