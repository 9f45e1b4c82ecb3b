#!/usr/bin/env python3
"""End-to-end proof that the dcctl lab works (run: scripts/lab selftest [HOST...]).

Needs a lab that is up (scripts/lab up) and Python libvirt bindings (Debian python3-libvirt with
/usr/bin/python3, or any venv with libvirt-python). Everything goes through the per-host
qemu+libssh URIs from /var/lib/dcctl-lab/hosts.json, i.e. with SSH host-key verification.

1. host keys: the city URI fails with a WRONG known_hosts and with an EMPTY one, works with ours
2. on every host: transient dir pool under /srv/dcctl/images, qcow2 volume, TCG domain from
   scripts/lab.d/example-domain.xml; boot marker in the serial0 log; command through the
   ttyS1 unix socket (dd 10 MiB to /dev/vda); `poweroff -f` → domain shut off (ACPI)
3. live migration city → prov with storage copy (unless --no-migrate): guest memory + disk
   survive, heartbeats continue in prov's serial log, ttyS1 answers on prov
Everything it creates is removed at the end (domains selftest-*, pool selftest).
"""
import json
import os
import re
import socket
import sys
import tempfile
import time

import libvirt

LAB = "/var/lib/dcctl-lab"
HERE = os.path.dirname(os.path.abspath(__file__))
POOL = "selftest"
libvirt.registerErrorHandler(lambda *a: None, None)
lab = json.load(open(f"{LAB}/hosts.json"))
HOSTS = lab["hosts"]
MARKER = re.compile(r"^DCCTL-BOOT-OK host=(\S+) name=(\S+) disks=(\S+)$", re.M)
failures = []


def say(*a):
    print(*a, flush=True)


def check(cond, what):
    say(("  ok   " if cond else "  FAIL ") + what)
    if not cond:
        failures.append(what)
    return cond


def root_view(host, inside_path):
    """/srv/dcctl/... inside host -> path in the root namespace."""
    return HOSTS[host]["srv_root_view"] + inside_path[len("/srv/dcctl"):]


def domain_xml(name, heartbeat=None):
    xml = open(f"{HERE}/example-domain.xml").read()
    xml = re.sub(r"<!--.*?-->\s*", "", xml, flags=re.S)
    xml = xml.replace("/srv/dcctl/images/lab-example.qcow2", f"/srv/dcctl/images/{POOL}/{name}.qcow2")
    xml = xml.replace("lab-example", name)
    if heartbeat is None:
        xml = re.sub(r" dcctl\.heartbeat=\d+", "", xml)
    else:
        xml = re.sub(r"dcctl\.heartbeat=\d+", f"dcctl.heartbeat={heartbeat}", xml)
    return xml


def ensure_pool(conn):
    try:
        return conn.storagePoolLookupByName(POOL)
    except libvirt.libvirtError:
        pass
    xml = f"<pool type='dir'><name>{POOL}</name><target><path>/srv/dcctl/images/{POOL}</path></target></pool>"
    return conn.storagePoolCreateXML(xml, libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)


def cleanup(conn, host=None):
    """Remove every selftest-* domain, the selftest pool (and its directory) and, given the
    host, the selftest-* serial logs in its console directory."""
    for d in conn.listAllDomains():
        if d.name().startswith("selftest-"):
            try:
                if d.isActive():
                    d.destroy()
            except libvirt.libvirtError:
                pass
            try:
                d.undefine()
            except libvirt.libvirtError:
                pass
    try:
        p = conn.storagePoolLookupByName(POOL)
        for v in p.listAllVolumes():
            v.delete()
        p.destroy()
    except libvirt.libvirtError:
        pass
    if host:
        try:
            os.rmdir(root_view(host, f"/srv/dcctl/images/{POOL}"))  # transient pool: dir stays
        except OSError:
            pass
        cdir = root_view(host, "/srv/dcctl/console")
        for f in os.listdir(cdir) if os.path.isdir(cdir) else []:
            if f.startswith("selftest-") and f.endswith(".log"):
                os.unlink(os.path.join(cdir, f))


class TTY:
    """Command channel to the guest shell on ttyS1 (unix socket, libvirt mode='bind')."""

    def __init__(self, path, timeout=60):
        end = time.monotonic() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)
        self.buf = b""
        self.n = 0
        # the guest may still be booting: poke until the shell answers
        while True:
            self.n += 1
            tag = f"READY-{self.n}"
            self.s.sendall(f"echo {tag}\n".encode())
            try:
                self._until(tag, 0.5)
                return
            except TimeoutError:
                if time.monotonic() > end:
                    raise TimeoutError(f"guest shell on {path} did not answer in {timeout}s")

    def _until(self, tag, timeout):
        end = time.monotonic() + timeout
        while True:
            lines = self.buf.replace(b"\r", b"").split(b"\n")
            for i, l in enumerate(lines[:-1]):
                if l.decode(errors="replace").startswith(tag):
                    self.buf = b"\n".join(lines[i + 1:])
                    return [x.decode(errors="replace") for x in lines[:i + 1]]
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(tag)
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(4096)
            except socket.timeout:
                raise TimeoutError(tag)
            if not chunk:
                raise EOFError("ttyS1 socket closed")
            self.buf += chunk

    def run(self, cmd, timeout=60):
        """Run one command line in the guest; return (rc, output lines)."""
        self.n += 1
        tag = f"__END{self.n}__"
        self.s.sendall(f"{cmd}; echo {tag} rc=$?\n".encode())
        lines = self._until(tag, timeout)
        rc = int(lines[-1].split("rc=")[1])
        return rc, [l for l in lines[:-1] if l and not l.startswith("READY-")]

    def send(self, line):
        self.s.sendall(line.encode() + b"\n")

    def close(self):
        self.s.close()


def wait_marker(logpath, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            m = MARKER.search(open(logpath, errors="replace").read().replace("\r", ""))
            if m:
                return m
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    return None


def boot(conn, host, name, heartbeat=None):
    pool = ensure_pool(conn)
    vol_xml = (f"<volume><name>{name}.qcow2</name><capacity unit='MiB'>64</capacity>"
               f"<target><format type='qcow2'/></target></volume>")
    pool.createXML(vol_xml, 0)
    log = root_view(host, f"/srv/dcctl/console/{name}.log")
    if os.path.exists(log):
        os.unlink(log)
    t0 = time.monotonic()
    dom = conn.defineXML(domain_xml(name, heartbeat))
    dom.create()
    t1 = time.monotonic()
    m = wait_marker(log, 60)
    t2 = time.monotonic()
    check(m is not None and m.group(1) == name and m.group(2) == name and m.group(3) == "vda",
          f"{host}: boot marker {m.group(0) if m else None!r} after {t2 - t0:.1f}s (define+start {t1 - t0:.2f}s)")
    return dom, log, t2 - t0


def test_hostkeys():
    say("== host-key verification (city)")
    good = HOSTS["city"]["uri"]
    kh = lab["ssh"]["known_hosts"]
    lines = open(kh).read().splitlines()
    prov_key = [l for l in lines if l.startswith(HOSTS["prov"]["ip"] + ",")][0].split(" ", 1)[1]
    with tempfile.TemporaryDirectory() as td:
        wrong = f"{td}/wrong"
        open(wrong, "w").write(f"{HOSTS['city']['ip']} {prov_key}\n")  # city's address, prov's key
        empty = f"{td}/empty"
        open(empty, "w").write("")
        for label, path, expect_ok in (("our known_hosts", kh, True), ("WRONG key", wrong, False),
                                        ("EMPTY known_hosts", empty, False)):
            uri = good.replace(f"known_hosts={kh}", f"known_hosts={path}")
            try:
                c = libvirt.open(uri)
                got = f"connected, hostname={c.getHostname()}"
                c.close()
                ok = True
            except libvirt.libvirtError as e:
                got = "refused: " + e.get_error_message()[:110]
                ok = False
            check(ok == expect_ok, f"{label}: {got}")


def test_host(host):
    say(f"== host {host} ({HOSTS[host]['uri'].split('?')[0]})")
    conn = libvirt.open(HOSTS[host]["uri"])
    cleanup(conn)
    check(conn.getHostname() == HOSTS[host]["hostname"], f"{host}: getHostname() = {conn.getHostname()}")
    name = f"selftest-{host}"
    dom, log, bt = boot(conn, host, name)
    tty = TTY(root_view(host, f"/srv/dcctl/console/{name}.ttyS1.sock"))
    t = time.monotonic()
    rc, out = tty.run("dd if=/dev/urandom of=/dev/vda bs=1M count=10 conv=fsync")
    check(rc == 0 and "10+0 records out" in out, f"{host}: ttyS1 dd 10 MiB -> rc={rc} {out} ({time.monotonic() - t:.1f}s)")
    rc, out = tty.run("hostname; cat /sys/block/vda/size")
    check(out == [name, "131072"], f"{host}: ttyS1 hostname/disk size -> {out}")
    tty.send("poweroff -f")
    # keep the socket open until the guest has read the line: QEMU drops input that is still
    # unread when the client disconnects
    end = time.monotonic() + 20
    while time.monotonic() < end and dom.isActive():
        time.sleep(0.1)
    tty.close()
    check(not dom.isActive(), f"{host}: 'poweroff -f' in the guest -> domain shut off")
    cleanup(conn, host)
    conn.close()
    return bt


def test_migration(src="city", dst="prov"):
    say(f"== live migration {src} -> {dst}")
    cs, cd = libvirt.open(HOSTS[src]["uri"]), libvirt.open(HOSTS[dst]["uri"])
    cleanup(cs)
    cleanup(cd)
    name = "selftest-migrate"
    dom, log, _ = boot(cs, src, name, heartbeat=1)
    tty = TTY(root_view(src, f"/srv/dcctl/console/{name}.ttyS1.sock"))
    tty.run("dd if=/dev/urandom of=/dev/vda bs=1M count=8 conv=fsync 2>/dev/null; echo memory-state > /tmp/state")
    rc, before = tty.run("md5sum /dev/vda | cut -c1-32")
    tty.close()
    ensure_pool(cd)  # destination pool: libvirt pre-creates the disk there for the storage copy
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
             | libvirt.VIR_MIGRATE_NON_SHARED_DISK)
    t0 = time.monotonic()
    try:
        nd = dom.migrate(cd, flags, None, f"tcp://{HOSTS[dst]['ip']}", 0)
    except libvirt.libvirtError as e:
        check(False, f"migration: {e.get_error_message()}")
        return
    mt = time.monotonic() - t0
    check(nd.isActive() and not [d for d in cs.listAllDomains() if d.name() == name],
          f"migrated in {mt:.1f}s; running on {cd.getHostname()}, gone from {cs.getHostname()}")
    dlog = root_view(dst, f"/srv/dcctl/console/{name}.log")
    time.sleep(3)
    hb = re.findall(r"DCCTL-HB n=(\d+)", open(dlog, errors="replace").read())
    check(len(hb) >= 2 and int(hb[0]) > 1, f"heartbeats continue in {dst}'s serial log: n={hb[:1]}..{hb[-1:]}")
    tty = TTY(root_view(dst, f"/srv/dcctl/console/{name}.ttyS1.sock"))
    rc, state = tty.run("cat /tmp/state")
    rc, after = tty.run("md5sum /dev/vda | cut -c1-32")
    check(state == ["memory-state"] and after == before, f"guest memory + disk survived: {state} md5 {after} == {before}")
    tty.close()
    cleanup(cd, dst)
    cleanup(cs, src)
    return mt


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    hosts = args or list(HOSTS)
    t0 = time.monotonic()
    test_hostkeys()
    boots = {h: test_host(h) for h in hosts}
    if "--no-migrate" not in sys.argv:
        test_migration()
    say(f"boot times (start -> marker): " + ", ".join(f"{h} {t:.1f}s" for h, t in boots.items()))
    say(f"selftest took {time.monotonic() - t0:.1f}s")
    if failures:
        say(f"SELFTEST FAILED: {len(failures)} check(s): " + "; ".join(failures))
        sys.exit(1)
    say("SELFTEST PASSED")


if __name__ == "__main__":
    main()
