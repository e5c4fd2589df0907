# SPDX-License-Identifier: Apache-2.0
"""regcache(8) and mirror.yml(5) cannot drift from the program: both are written from README.md
(docs/man/mkman.py), and here README.md and the pages are held against `regcache --help`, the
configuration parser (its answers and its source) and mirror.yml.example; groff and man-db
render both pages without a warning."""

import importlib.util
import os
import re
import shutil
import subprocess

import pytest
import yaml

from mirror import REGCACHE, REPO_ROOT, regcache

README = os.path.join(REPO_ROOT, "README.md")
MKMAN = os.path.join(REPO_ROOT, "docs", "man", "mkman.py")
CONFIG_C = os.path.join(REPO_ROOT, "config", "config.c")
PAGES = ("regcache.8", "mirror.yml.5")


def load_mkman():
    spec = importlib.util.spec_from_file_location("mkman", MKMAN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mkman = load_mkman()
README_TEXT = open(README, encoding="utf-8").read()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The pages as mkman.py writes them now from README.md: {name: path}."""
    out = tmp_path_factory.mktemp("man")
    r = subprocess.run(["/usr/bin/python3", MKMAN, README, str(out), "0.0-test"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {name: str(out / name) for name in PAGES}


def rendered(path):
    """The page as plain text, lines too wide to wrap, without hyphenation or adjustment (.nh and .ad l
    right after .TH, which resets them) so that words and keys come out whole and singly
    spaced."""
    text = re.sub(r"(\.TH [^\n]*\n)", r"\1.nh\n.ad l\n", open(path).read(), count=1)
    r = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=2000n"], input=text,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return re.sub(r"[ \t]+", " ", r.stdout)


def help_usages():
    """`regcache --help`: each usage as "regcache NAME ARGS... description"."""
    r = regcache("--help")
    assert r.returncode == 0, r.stderr
    usages = []
    for line in r.stdout.splitlines():
        line = re.sub(r"^usage:\s*", "", line).strip()
        if line.startswith("regcache"):
            usages.append(line)
        elif usages and line:   # a usage or its description continued on the next line
            usages[-1] += " " + line
    return usages


def synopsis_of(help_line, synopses):
    """The README synopsis a --help line starts with (the longest one, so that `regcache gc
    --hosted ...` is not taken for `regcache gc ...`)."""
    hits = [s for s in synopses if help_line == s or help_line.startswith(s + " ")]
    return max(hits, key=len) if hits else None


def test_every_subcommand_of_help_is_a_readme_command_and_in_regcache_8(pages):
    synopses = [usage for usage, _ in mkman.commands(README_TEXT)]
    usages = help_usages()
    assert len(usages) >= 8, usages
    page = rendered(pages["regcache.8"])
    commands_part = "\n" + page.split("\nCOMMANDS\n", 1)[1].split("\nSIGNALS\n", 1)[0]
    matched = set()
    for line in usages:
        synopsis = synopsis_of(line, synopses)
        assert synopsis, f"`regcache --help` lists '{line}', README.md '## Command line' does not"
        matched.add(synopsis)
        assert synopsis in page.split("\nDESCRIPTION\n", 1)[0], f"not in SYNOPSIS: {synopsis}"
        assert f"\n {synopsis}\n" in commands_part, f"not in COMMANDS: {synopsis}"
    unknown = [s for s in synopses if s not in matched]
    assert not unknown, f"README.md documents commands `regcache --help` does not list: {unknown}"


def test_every_signal_the_daemon_handles_is_in_regcache_8(pages):
    serve_c = open(os.path.join(REPO_ROOT, "daemon", "serve.c")).read()
    handled = set(re.findall(r"uv_signal_start\([^,]+,\s*\w+,\s*(SIG[A-Z]+)\)", serve_c))
    handled |= set(re.findall(r"signal\((SIG[A-Z]+),", serve_c))
    assert {"SIGTERM", "SIGINT", "SIGHUP"} <= handled, handled
    signals = rendered(pages["regcache.8"]).split("\nSIGNALS\n", 1)[1].split("\nENVIRONMENT\n")[0]
    for sig in handled:
        assert sig in signals, f"{sig} is handled in daemon/serve.c, not described in SIGNALS"
    assert "second SIGTERM" in signals and "certificate" in signals and "htpasswd" in signals


def readme_keys():
    rows, _, _ = mkman.config_rows(README_TEXT)
    keys = [k for cell, _, _ in rows for k in mkman.row_keys(cell)]
    assert len(keys) > 50 and len(set(keys)) == len(keys), keys
    return rows, keys


def yaml_for(key, value="x"):
    """A configuration setting one dotted key (upstreams[].url: a one-item list)."""
    node = value
    for part in reversed(key.split(".")):
        if part.endswith("[]"):
            node = {part[:-2]: [node]}
        else:
            node = {part: node}
    return yaml.safe_dump(node)


def parser_verdict(tmp_dir, key, value="x"):
    path = os.path.join(tmp_dir, "one-key.yml")
    with open(path, "w") as f:
        f.write(yaml_for(key, value))
    r = regcache("check-config", "-c", path)
    return r.returncode, r.stdout + r.stderr


def test_the_parser_knows_every_readme_key_and_refuses_an_unknown_one(tmp_dir):
    _, keys = readme_keys()
    # control: a key the parser does not know is refused by name, in a section and at the top
    for bogus in ("cache.no_such_key", "no_such_key", "upstreams[].no_such_key"):
        status, out = parser_verdict(tmp_dir, bogus)
        assert status != 0 and "unknown key" in out, (bogus, out)
    unknown = []
    for key in keys:
        status, out = parser_verdict(tmp_dir, key)
        if "unknown key" in out:
            unknown.append(f"{key}: {out.strip()}")
    assert not unknown, "README.md keys the parser does not accept:\n" + "\n".join(unknown)


def parser_source_keys():
    """The dotted keys config/config.c compares names with: its fields[] table, and each
    `kv.name, "..."` test under the prefix the function passes get_pair."""
    src = open(CONFIG_C).read()
    keys = {f"{s}.{n}" for s, n in re.findall(r'\{"(\w+)", "(\w+)", F_[A-Z_]+', src)}
    for body in re.split(r"\n(?=static int |int )", src):
        names = re.findall(r'kv\.name, "(\w+)"\)', body)
        if not names:
            continue
        literal = re.search(r'get_pair\(x, \w+, \w+, "(\w*)"', body)
        if literal:
            prefix = literal.group(1)
        elif '"upstreams[%zu]"' in body:
            prefix = "upstreams[]"
        else:
            continue  # the general sections: the fields[] table above
        keys |= {f"{prefix}.{n}" if prefix else n for n in names}
    return keys


def documented(key, rows, keys):
    """A README key, a section of README keys (`cache`), or a name its parent's row mentions
    (`repositories` in the row of `hosted`)."""
    if key in keys or any(k.startswith(key + ".") or k.startswith(key + "[]") for k in keys):
        return True
    parent, _, leaf = key.rpartition(".")
    return any(parent in mkman.row_keys(cell) and f"`{leaf}`" in meaning
               for cell, _, meaning in rows)


def test_every_key_the_parser_accepts_is_in_the_readme_table(tmp_dir):
    rows, keys = readme_keys()
    source_keys = parser_source_keys()
    assert len(source_keys) > 50, source_keys
    # the scan of the source is right when the parser itself accepts what it found
    misread = [k for k in source_keys if "unknown key" in parser_verdict(tmp_dir, k)[1]]
    assert not misread, f"read from config/config.c but refused by the parser: {misread}"
    missing = sorted(k for k in source_keys if not documented(k, rows, keys))
    assert not missing, f"keys the parser accepts that README.md's table lacks: {missing}"


def flatten(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, list) and node and all(isinstance(i, dict) for i in node):
        for item in node:
            yield from flatten(item, prefix + "[]")
    else:
        yield prefix


def test_every_key_of_mirror_yml_example_is_in_the_readme_table():
    rows, keys = readme_keys()
    example = yaml.safe_load(open(os.path.join(REPO_ROOT, "mirror.yml.example")))
    found = set(flatten(example))
    assert {"listen", "storage", "upstreams[].url"} <= found, found
    missing = sorted(k for k in found if not documented(k, rows, keys))
    assert not missing, f"mirror.yml.example keys README.md's table lacks: {missing}"


def test_mirror_yml_5_has_every_readme_key_with_its_default(pages):
    rows, _ = readme_keys()
    page = rendered(pages["mirror.yml.5"])
    keys_part = "\n" + page.split("\nKEYS\n", 1)[1].split("\nUNITS\n", 1)[0]
    for cell, default, _ in rows:
        names = mkman.row_keys(cell)
        plain_default = default.replace("`", "")
        assert f"\n {', '.join(names)} (default: {plain_default})\n" in keys_part, cell


def test_the_built_pages_are_the_ones_readme_md_gives(pages):
    """The pages meson built next to the binary under test are up to date."""
    built = os.path.join(os.path.dirname(os.path.abspath(REGCACHE[-1])), "docs", "man")
    if not os.path.isdir(built):
        pytest.skip(f"no meson build beside {REGCACHE[-1]}")
    for name in PAGES:
        fresh = open(pages[name]).read().splitlines()
        old = open(os.path.join(built, name)).read().splitlines()
        strip = [line for line in fresh if not line.startswith(".TH ")]
        assert [line for line in old if not line.startswith(".TH ")] == strip, name


@pytest.mark.parametrize("name", PAGES)
def test_the_page_renders_without_a_warning(pages, name):
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    # what lintian runs, and groff's own checks of the man macros
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", pages[name]],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and not r.stderr, r.stderr
    r = subprocess.run(["groff", "-man", "-ww", "-z", pages[name]], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0 and not r.stderr, r.stderr
    r = subprocess.run(["man", "-l", pages[name]], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0 and not r.stderr and "NAME" in r.stdout, r.stderr
    if shutil.which("mandoc"):
        r = subprocess.run(["mandoc", "-Tlint", "-Wwarning", pages[name]], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


def test_a_new_command_and_a_new_key_in_readme_md_reach_the_pages(tmp_path):
    """What the README gains, the pages gain, with no change to mkman.py."""
    text = README_TEXT.replace(
        "\n## Command line\n\n",
        "\n## Command line\n\n- `regcache frobnicate [-c FILE] [--json] REPO...`: frobnicates"
        " `REPO`\n  on two lines.\n", 1).replace(
        "\n| `listen` |", "\n| `frob.level` | `3` | how much `frob` |\n| `listen` |", 1)
    readme = tmp_path / "README.md"
    readme.write_text(text)
    r = subprocess.run(["/usr/bin/python3", MKMAN, str(readme), str(tmp_path), "0.0-test"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    page8 = rendered(str(tmp_path / "regcache.8"))
    assert page8.count("regcache frobnicate [-c FILE] [--json] REPO...") == 2  # SYNOPSIS, COMMANDS
    assert "Frobnicates REPO on two lines." in page8
    page5 = rendered(str(tmp_path / "mirror.yml.5"))
    assert "\n frob.level (default: 3)\n how much frob\n" in page5
