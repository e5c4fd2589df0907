# SPDX-License-Identifier: Apache-2.0
"""The Debian package, built once by packaging/build-deb.sh and installed on this machine with
apt-get (no systemd runs here, which is also how a container or a chroot installs it): lintian
finds nothing wrong, the install makes the user, the conffile, the storage and the man pages,
the unit's own ExecStart run as that user serves a pull from a token-auth upstream, systemd
accepts the unit and scores it at most 2.0, and a purge leaves nothing behind. The package is
purged after the tests whatever happens."""

import grp
import os
import pwd
import re
import shlex
import signal
import stat
import subprocess

import pytest

import clients
import procs
from helpers import blob_gets, since
from images import verify_oci_layout
from mirror import REPO_ROOT

pytestmark = [pytest.mark.once, pytest.mark.time_limit(900)]

CONF = "/etc/regcache/mirror.yml"
STORAGE = "/var/lib/regcache"
UNIT = "/lib/systemd/system/regcache.service"
BINARY = "/usr/bin/regcache"


def run(*argv, timeout=600, check=False, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert r.returncode == 0, f"{argv}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def apt_env():
    return dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def package_state():
    """dpkg's status of regcache ("install ok installed", "deinstall ok config-files"), or ""
    when dpkg knows nothing of it."""
    r = run("dpkg-query", "-W", "-f=${Status}", "regcache")
    return r.stdout.strip() if r.returncode == 0 else ""


def purge():
    if package_state():
        run("apt-get", "purge", "-y", "regcache", env=apt_env(), check=True)


def meson_version():
    text = open(os.path.join(REPO_ROOT, "meson.build")).read()
    return re.search(r"^\s*version\s*:\s*'([^']+)'", text, re.M).group(1)


@pytest.fixture(scope="module")
def deb():
    """dist/regcache_<version>_<arch>.deb, built once for the module."""
    r = run(os.path.join(REPO_ROOT, "packaging", "build-deb.sh"), timeout=800, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    arch = run("dpkg", "--print-architecture", check=True).stdout.strip()
    path = os.path.join(REPO_ROOT, "dist", f"regcache_{meson_version()}_{arch}.deb")
    assert os.path.isfile(path), os.listdir(os.path.join(REPO_ROOT, "dist"))
    return path


@pytest.fixture(scope="module")
def installed(deb):
    """The package installed with apt-get; purged afterwards, however the tests went."""
    purge()  # a package left over from an interrupted run
    try:
        r = run("apt-get", "install", "-y", deb, env=apt_env())
        assert r.returncode == 0, r.stdout + r.stderr
        yield deb
    finally:
        purge()


def test_lintian_finds_no_error_and_no_warning(deb):
    r = run("lintian", "--display-info", deb)
    lines = (r.stdout + r.stderr).splitlines()
    bad = [line for line in lines if re.match(r"^[EW]: ", line)]
    assert not bad, "\n".join(lines)
    assert r.returncode == 0, r.stdout + r.stderr
    fields = run("dpkg-deb", "-f", deb, "Package", "Version", check=True).stdout
    assert fields.split() == ["Package:", "regcache", "Version:", meson_version()], fields
    # every override says why, in a comment above it
    debian = os.path.join(REPO_ROOT, "packaging", "debian")
    for name in os.listdir(debian):
        if not name.endswith("lintian-overrides"):
            continue
        previous = ""
        for line in open(os.path.join(debian, name)):
            if line.strip() and not line.startswith("#"):
                assert previous.startswith("#"), f"{name}: no comment above '{line.strip()}'"
            previous = line


def test_install_makes_the_user_the_conffile_the_storage_and_the_man_pages(installed):
    assert package_state() == "install ok installed"
    # the postinst made the user with systemd-sysusers, no systemd running
    user = pwd.getpwnam("regcache")
    assert user.pw_uid < 1000 and user.pw_dir == STORAGE, user
    assert user.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin"), user
    assert grp.getgrgid(user.pw_gid).gr_name == "regcache"

    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "regcache", check=True).stdout
    assert re.search(r"^\s*/etc/regcache/mirror\.yml [0-9a-f]{32}$", conffiles, re.M), conffiles
    text = open(CONF).read()
    assert re.search(r"^storage: /var/lib/regcache$", text, re.M)
    r = run(BINARY, "check-config", "-c", CONF, check=True)
    assert "storage /var/lib/regcache" in r.stdout

    st = os.stat(STORAGE)
    assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)

    for page, where in (("regcache", "/usr/share/man/man8/regcache.8.gz"),
                        ("mirror.yml", "/usr/share/man/man5/mirror.yml.5.gz")):
        assert run("man", "-w", page, check=True).stdout.strip() == where
        r = run("man", "--warnings", "-E", "UTF-8", "-Tutf8", "-Z", page,
                env=dict(os.environ, MANWIDTH="80"))
        assert r.returncode == 0 and not r.stderr, r.stderr
    assert "SIGHUP" in run("man", "regcache", env=dict(os.environ, MANWIDTH="80")).stdout
    assert os.access(BINARY, os.X_OK) and os.path.isfile(UNIT)
    assert run(BINARY, "--version", check=True).stdout.strip() == f"regcache {meson_version()}"


def unit_value(text, key):
    values = re.findall(rf"^{key}=(.*)$", text, re.M)
    assert len(values) == 1, (key, values)
    return values[0]


def as_the_unit_runs_it(unit_text, command_line):
    """argv running a unit's command as its User= with its UMask=, no capabilities and no new
    privileges, from / with systemd's minimal environment (what systemd would do, minus the
    namespaces and filters, which need systemd itself)."""
    argv = shlex.split(command_line.lstrip("-@:+!"))
    user = unit_value(unit_text, "User")
    umask = unit_value(unit_text, "UMask")
    return ["sh", "-c", 'umask "$0" && exec "$@"', umask,
            "setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", "--", *argv]


SYSTEMD_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8"}


def test_the_units_execstart_as_user_regcache_serves_a_pull(installed, up, make_image, push,
                                                           tmp_dir):
    unit = open(UNIT).read()
    assert unit_value(unit, "User") == "regcache" and "DynamicUser" not in unit
    original = open(CONF).read()
    port = procs.free_port()
    # the packaged configuration, but for the address and the upstream
    edited, n_listen = re.subn(r"^listen: .*$", f"listen: 127.0.0.1:{port}", original, flags=re.M)
    edited, n_url = re.subn(r"^(\s+url:) https://registry-1\.docker\.io", rf"\1 {up.url}", edited,
                            flags=re.M)
    assert (n_listen, n_url) == (1, 1)
    img = push(make_image(61, (64 * 1024, 200 * 1024), fmt="oci"), up, "library/debpkg", "v1")
    proc = None
    try:
        with open(CONF, "w") as f:
            f.write(edited)
        run(*as_the_unit_runs_it(unit, unit_value(unit, "ExecStartPre")), env=SYSTEMD_ENV,
            cwd="/", check=True)
        log = os.path.join(tmp_dir, "regcache.log")
        proc = procs.Proc(as_the_unit_runs_it(unit, unit_value(unit, "ExecStart")), log,
                          env=SYSTEMD_ENV, cwd="/")
        procs.wait_for(lambda: procs.http_status(port, "/healthz") == 200, 30,
                       "packaged regcache /healthz", proc=proc)

        mark = up.mark()
        out = os.path.join(tmp_dir, "copy")
        clients.skopeo_copy_from_mirror(port, "library/debpkg:v1", out, ["--preserve-digests"])
        verify_oci_layout(out, img.digest)
        procs.wait_settled(up.requests)
        gets = blob_gets(since(up, mark))
        assert {d: gets[d] for d in img.blob_digests} == {d: 1 for d in img.blob_digests}

        # everything the mirror wrote belongs to regcache and to nobody else
        user = pwd.getpwnam("regcache")
        found = []
        for root, dirs, files in os.walk(STORAGE):
            for name in [root] + [os.path.join(root, f) for f in files]:
                st = os.lstat(name)
                found.append(name)
                assert st.st_uid == user.pw_uid, name
                assert stat.S_IMODE(st.st_mode) & 0o077 == 0, (name, oct(st.st_mode))
        for d in img.blob_digests:
            assert os.path.join(STORAGE, "blobs", "sha256", d[7:9], d[7:]) in found, d

        # the offline commands as the storage's owner, while the daemon serves
        r = run("runuser", "-u", "regcache", "--", BINARY, "gc", "-c", CONF, check=True)
        assert r.stdout.startswith("gc: evicted 0 of "), r.stdout
        r = run("runuser", "-u", "regcache", "--", BINARY, "ls", "-c", CONF, check=True)
        assert "library/debpkg" in r.stdout, r.stdout
        assert "running as root" not in open(log).read()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, proc.tail()
        proc = None
        r = run("runuser", "-u", "regcache", "--", BINARY, "verify", "-c", CONF, check=True)
        assert " 0 corrupt removed" in r.stdout, r.stdout
    finally:
        if proc is not None:
            proc.kill()
        with open(CONF, "w") as f:
            f.write(original)


def test_systemd_accepts_the_installed_unit_and_scores_it_at_most_2(installed):
    r = run("systemd-analyze", "verify", UNIT)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
    r = run("systemd-analyze", "security", "--offline=true", UNIT)
    m = re.search(r"Overall exposure level for regcache.service: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout


def test_purge_removes_the_package_its_configuration_and_its_store(installed):
    assert os.path.isdir(STORAGE) and os.path.isfile(CONF)
    r = run("apt-get", "purge", "-y", "regcache", env=apt_env())
    assert r.returncode == 0, r.stdout + r.stderr
    for path in (BINARY, UNIT, "/etc/regcache", STORAGE, "/usr/lib/sysusers.d/regcache.conf",
                 "/usr/lib/tmpfiles.d/regcache.conf", "/usr/share/man/man8/regcache.8.gz"):
        assert not os.path.lexists(path), path
    assert package_state() == ""
    r = run("dpkg", "-s", "regcache")
    assert r.returncode != 0 and "not installed" in r.stderr, r.stdout + r.stderr
    # the user stays (Debian leaves system users a package made: files elsewhere may be its)
    assert pwd.getpwnam("regcache").pw_dir == STORAGE
