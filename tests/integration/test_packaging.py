# SPDX-License-Identifier: Apache-2.0
"""`meson install` puts the binary, the hardened systemd unit, the example configuration, the
load-balancer configurations and the manual pages in their places, and systemd accepts the unit."""

import os
import re
import subprocess

from mirror import REPO_ROOT


def run(*argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)


def test_meson_install_and_systemd_unit(tmp_dir):
    prefix = os.path.join(tmp_dir, "prefix")
    build = os.path.join(tmp_dir, "build")
    unit_dir = os.path.join(prefix, "lib", "systemd", "system")
    r = run("meson", "setup", build, f"--prefix={prefix}", f"-Dsystemd_unit_dir={unit_dir}",
            cwd=REPO_ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run("meson", "install", "-C", build, "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr

    binary = os.path.join(prefix, "bin", "regcache")
    unit = os.path.join(unit_dir, "regcache.service")
    conf = os.path.join(prefix, "etc", "regcache", "mirror.yml")
    rules = os.path.join(prefix, "share", "regcache", "prometheus", "regcache.rules.yml")
    balancers = os.path.join(prefix, "share", "regcache", "load-balancer")
    man8 = os.path.join(prefix, "share", "man", "man8", "regcache.8")
    man5 = os.path.join(prefix, "share", "man", "man5", "mirror.yml.5")
    for path in (binary, unit, conf, conf + ".example", rules,
                 os.path.join(os.path.dirname(rules), "prometheus.yml.example"), man8, man5,
                 os.path.join(balancers, "haproxy.cfg"), os.path.join(balancers, "nginx.conf")):
        assert os.path.exists(path), path
    assert open(man8).read().count(".TH \"REGCACHE\" \"8\"") == 1
    assert ".SH KEYS" in open(man5).read()
    assert os.access(binary, os.X_OK)
    assert run(binary, "--version").stdout.startswith("regcache ")
    r = run(binary, "check-config", "-c", conf)
    assert r.returncode == 0, r.stderr

    text = open(unit).read()
    assert f"ExecStart={binary} serve -c {conf}" in text
    for directive in ("DynamicUser=yes", "StateDirectory=regcache", "ProtectSystem=strict",
                      "NoNewPrivileges=yes", "Restart=on-failure", "Type=notify",
                      "ExecReload=/bin/kill -HUP $MAINPID"):
        assert directive in text.splitlines(), directive
    # the daemon sends READY=1 itself: nothing may wait on another readiness protocol
    assert not re.search(r"^Type=(simple|exec|forking)", text, re.M)
    # NOTIFY_SOCKET is an AF_UNIX socket: the address families must allow it
    assert "AF_UNIX" in re.search(r"^RestrictAddressFamilies=(.*)$", text, re.M).group(1)

    # Documentation=man:... is checked with man(1): it finds the pages in the prefix
    r = run("systemd-analyze", "verify", unit,
            env=dict(os.environ, MANPATH=os.path.join(prefix, "share", "man")))
    assert r.returncode == 0, r.stdout + r.stderr
    r = run("systemd-analyze", "security", "--offline=true", unit)
    m = re.search(r"Overall exposure level for regcache.service: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout

    # A second install keeps an operator's edited configuration.
    with open(conf, "a") as f:
        f.write("# edited\n")
    r = run("meson", "install", "-C", build, "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert open(conf).read().endswith("# edited\n")


SPDX = "SPDX-License-Identifier: Apache-2.0"
# Data, not source: fuzz seeds, generated results, pictures and prose.
NOT_SOURCE = (".md", ".svg", ".png", ".csv", ".gitignore", ".json")
# Formats with no room for a comment: a Debian changelog starts with its first entry, and
# debian/source/format is one line that dpkg-source reads whole.
NO_COMMENT_FORMAT = ("packaging/debian/changelog", "packaging/debian/source/format")


def test_licence_and_an_spdx_line_in_every_source_file():
    text = open(os.path.join(REPO_ROOT, "LICENSE")).read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    files = run("git", "ls-files", cwd=REPO_ROOT).stdout.split()
    assert len(files) > 200
    missing = []
    for path in files:
        if (path.startswith("fuzz/corpus/") or path.endswith(NOT_SOURCE) or path == "LICENSE"
                or path in NO_COMMENT_FORMAT):
            continue
        with open(os.path.join(REPO_ROOT, path), errors="replace") as f:
            head = [f.readline() for _ in range(3)]
        if not any(SPDX in line for line in head):
            missing.append(path)
    assert not missing, f"no '{SPDX}' in the first lines of: {missing}"
