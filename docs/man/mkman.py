#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the manual pages regcache(8) and mirror.yml(5) from README.md.

README.md is the one source: the "## Command line" bullets (- `regcache NAME ARGS`: text) become
the commands of regcache(8), the "## Configuration" table (| key | default | meaning |) the keys
of mirror.yml(5). What the README does not hold (signals, files, exit status) is written here.
A new bullet or a new row needs no change to this file.

    mkman.py README.md OUTDIR VERSION

The tests import this file (commands, config_rows, row_keys) to compare the README with the
binary and the configuration parser.
"""

import datetime
import os
import re
import sys

NAME = "regcache"


# ---- reading README.md ----

def section(readme_text, title):
    """The lines of the "## title" section, up to the next "## " heading."""
    lines = readme_text.splitlines()
    try:
        start = lines.index("## " + title) + 1
    except ValueError:
        raise SystemExit(f"mkman: README.md has no '## {title}' section")
    end = start
    while end < len(lines) and not lines[end].startswith("## "):
        end += 1
    return lines[start:end]


def commands(readme_text):
    """(synopsis, [text lines]) for each "- `regcache ...`" bullet of "## Command line"; the text
    lines keep their indentation below the bullet's (code fences included)."""
    out, in_prose = [], False
    for line in section(readme_text, "Command line"):
        m = re.match(r"- `(" + NAME + r"(?: [^`]*)?)`(?::\s*(.*))?\.?$", line)
        if m:
            out.append((m.group(1), [m.group(2)] if m.group(2) else []))
            in_prose = False
        elif out and not in_prose and (line.startswith("  ") or not line.strip()):
            out[-1][1].append(line[2:])
        elif line.strip():
            in_prose = True  # text at the margin between bullets belongs to no command
    for _, text in out:
        while text and not text[-1].strip():
            text.pop()
    return out


def split_row(line):
    """The cells of a Markdown table row; | inside `code` or escaped as \\| does not split."""
    cells, cell, in_code, i = [], "", False, 0
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] == "|":
            cell += "|"
            i += 2
            continue
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append(cell.strip())
            cell = ""
        else:
            cell += ch
        i += 1
    cells.append(cell.strip())
    return cells


def config_rows(readme_text):
    """(key cell, default, meaning) for each row of the "## Configuration" key table, and the
    paragraphs before and after the table."""
    rows, before, after = [], [], []
    in_table = False
    for line in section(readme_text, "Configuration"):
        if line.startswith("|"):
            cells = split_row(line)
            if cells[:1] == ["key"]:
                in_table = True
                continue
            if set("".join(cells)) <= set("-: "):
                continue
            if len(cells) != 3:
                raise SystemExit(f"mkman: README.md configuration row without 3 cells: {line}")
            rows.append(tuple(cells))
        else:
            (after if in_table else before).append(line)
    if not rows:
        raise SystemExit("mkman: README.md '## Configuration' has no | key | default | meaning | table")
    return rows, before, after


def row_keys(key_cell):
    """The dotted keys a key cell names: "`upstreams[].username`, `.password`" is
    upstreams[].username and upstreams[].password."""
    keys = []
    for token in re.findall(r"`([^`]+)`", key_cell):
        if token.startswith(".") and keys:
            parent = keys[-1].rsplit(".", 1)[0] if "." in keys[-1] else ""
            token = parent + token
        keys.append(token)
    return keys


# ---- writing roff ----

def escape(text):
    """Plain text as roff: backslashes, non-ASCII characters and line-leading dots or quotes."""
    out = []
    for ch in text.replace("\\", "\\e"):
        out.append(ch if ord(ch) < 128 else "\\[u%04X]" % ord(ch))
    return "".join(out)


def inline(text):
    """Markdown inline text (`code`, [text](url), **strong**, *emphasis*) as roff."""
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 <\2>", text)
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) >= 2:
            out.append("\\fB" + escape(part[1:-1]).replace("-", "\\-") + "\\fR")
        else:
            part = escape(part)
            part = re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fR", part)
            part = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"\\fI\1\\fR", part)
            out.append(part)
    return "".join(out)


def text_line(line, keep_indent=False):
    """One line of text; a leading dot or quote would be read as a request."""
    line = line.rstrip() if keep_indent else line.strip()
    return "\\&" + line if line[:1] in (".", "'") else line


def paragraphs(lines, in_item=False):
    """Markdown lines (paragraphs and ``` blocks) as roff, one output line per paragraph (an
    inline `code` span may cross a line break). Inside a .TP item breaks are .IP, which keeps
    the item's indentation."""
    out, para, code = [], [], None
    brk = ".IP" if in_item else ".PP"

    def flush():
        if para:
            if out:
                out.append(brk)
            out.append(text_line(inline(" ".join(p.strip() for p in para))))
            para.clear()

    for line in lines:
        if line.strip().startswith("```"):
            if code is None:
                flush()
                code = []
            else:
                if out:
                    out.append(brk)
                out += ([] if in_item else [".RS 4"]) + [".nf"] + code + [".fi"]
                out += [] if in_item else [".RE"]
                code = None
        elif code is not None:
            code.append(text_line(escape(line.rstrip()).replace("-", "\\-"), keep_indent=True)
                        or "\\&")
        elif not line.strip():
            flush()
        else:
            para.append(line)
    flush()
    return out


def synopsis(usage):
    """`regcache gc [-c FILE] [--dry-run]` as bold words and options, italic placeholders."""
    out = []
    for token in re.findall(r"[\[\]|]|[^\s\[\]|]+", usage):
        if token in "[]|":
            out.append(token)
        elif re.fullmatch(r"[A-Z][A-Z0-9_]*(?:\.[a-z0-9]+)*(?:\.\.\.)?", token):
            out.append("\\fI" + token + "\\fR")
        else:
            out.append("\\fB" + escape(token).replace("-", "\\-") + "\\fR")
    # spaces only between words, none just inside brackets
    text = " ".join(out).replace("] \\fB...\\fR", "]...")   # "[--opt X]..." repeats
    text = text.replace(" | ", "|")   # "docker|containerd": alternatives
    return re.sub(r"\[ ", "[", re.sub(r" \]", "]", text))


def header(page, section_no, date, version, title):
    return [
        f'.\\" SPDX-License-Identifier: Apache-2.0',
        '.\\" Generated by docs/man/mkman.py from README.md: edit those, not this file.',
        f'.TH "{page.upper()}" "{section_no}" "{date}" "regcache {version}" "{title}"',
    ]


def regcache_8(readme_text, date, version):
    cmds = commands(readme_text)
    out = header("regcache", 8, date, version, "System Administration")
    out += [".SH NAME", "regcache \\- pull-through caching mirror for container registries",
            ".SH SYNOPSIS"]
    for i, (usage, _) in enumerate(cmds):
        out += ([".br"] if i else []) + [synopsis(usage)]
    out += [
        ".SH DESCRIPTION",
        "\\fBregcache\\fR serves the registry API (OCI distribution, Docker Registry v2) to",
        "container clients and answers each pull from its store or, on a miss, from the upstream",
        "registry, storing what it fetched. It can also host repositories of its own.",
        "Its configuration file is described in \\fBmirror.yml\\fR(5); every command that takes",
        "\\fB\\-c\\fR \\fIFILE\\fR (\\fB\\-\\-config\\fR \\fIFILE\\fR) reads it, and without one",
        "uses the defaults.",
        "The offline commands (\\fBgc\\fR, \\fBverify\\fR, \\fBstats\\fR, \\fBls\\fR) open the same",
        "store and index as the daemon and may run while it serves; run them as the user that owns",
        "the storage directory.",
        ".SH COMMANDS",
    ]
    for usage, text in cmds:
        out += [".TP", synopsis(usage)]
        if text:
            text = [text[0][:1].upper() + text[0][1:]] + text[1:]
        body = paragraphs(text, in_item=True)
        out += body if body else ["\\&"]
    out += [
        ".SH SIGNALS",
        ".TP",
        "\\fBSIGTERM\\fR, \\fBSIGINT\\fR",
        "A graceful stop: \\fB/readyz\\fR answers 503 at once, new requests are answered 503",
        "(probes excepted), requests in progress may finish within",
        "\\fBtimeouts.shutdown_grace\\fR, then the index is flushed and \\fBregcache serve\\fR",
        "exits 0, leaving the clean-shutdown record that lets the next start trust the index.",
        "A walk of the store in the background (after an unclean stop) stops before its next",
        "file and leaves no record: the next start walks again.",
        "Under systemd the daemon sends \\fBSTOPPING=1\\fR.",
        ".TP",
        "A second \\fBSIGTERM\\fR or \\fBSIGINT\\fR",
        "Stops at once, without waiting for the responses in progress.",
        ".TP",
        "\\fBSIGHUP\\fR",
        "Reloads the TLS certificate and key (\\fBtls.cert\\fR, \\fBtls.key\\fR; on an error the",
        "previous certificate is kept) and re-reads the \\fBauth.htpasswd\\fR file. Other keys of",
        "the configuration file are read only at start. Under systemd (\\fBsystemctl reload",
        "regcache\\fR) the daemon sends \\fBRELOADING=1\\fR, then \\fBREADY=1\\fR once done.",
        ".TP",
        "\\fBSIGPIPE\\fR",
        "Ignored: a client that goes away is noticed by the failed write.",
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBNOTIFY_SOCKET\\fR",
        "Set by systemd for a \\fBType=notify\\fR service: \\fBregcache serve\\fR sends",
        "\\fBREADY=1\\fR once the mirror serves (milliseconds after the start), and its status.",
        ".TP",
        "\\fBCREDENTIALS_DIRECTORY\\fR",
        "Set by systemd's \\fBLoadCredential=\\fR: \\fB%d/\\fR\\fINAME\\fR in",
        "\\fBupstreams[].password_file\\fR names the file \\fINAME\\fR there.",
        ".TP",
        "\\fBhttps_proxy\\fR, \\fBhttp_proxy\\fR, \\fBall_proxy\\fR, \\fBno_proxy\\fR",
        "Upstream requests go through the proxy they name (libcurl's variables).",
        ".SH FILES",
        ".TP",
        "\\fI/etc/regcache/mirror.yml\\fR",
        "The configuration file of the packaged service, see \\fBmirror.yml\\fR(5).",
        ".TP",
        "\\fI/var/lib/regcache\\fR",
        "The packaged service's storage: \\fIblobs/sha256/\\fR (content-addressed blobs and",
        "manifests), \\fItmp/\\fR (partial fills and uploads), \\fIregcache.db\\fR (the SQLite",
        "index) and \\fItoken.key\\fR (with \\fBauth.scheme: token\\fR). Mode 0700, owned by the",
        "user the mirror runs as.",
        ".TP",
        "\\fI/lib/systemd/system/regcache.service\\fR",
        "The systemd unit: \\fBregcache serve \\-c /etc/regcache/mirror.yml\\fR as a hardened",
        "service, \\fBsystemctl reload\\fR sends \\fBSIGHUP\\fR.",
        ".SH EXIT STATUS",
        ".TP",
        "0",
        "Success; \\fBregcache serve\\fR after a graceful stop.",
        ".TP",
        "1",
        "An error: a configuration file that does not load (the message names file, line and key),",
        "a store or index that cannot be opened, a failed command.",
        ".TP",
        "2",
        "Usage: an unknown command or argument, or a missing required one.",
        ".TP",
        "3",
        "\\fBregcache verify\\fR found and removed corrupt files.",
        ".SH SEE ALSO",
        "\\fBmirror.yml\\fR(5), \\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1),",
        "\\fBsystemd.exec\\fR(5), \\fBskopeo\\fR(1)",
    ]
    return "\n".join(out) + "\n"


def mirror_yml_5(readme_text, date, version):
    rows, before, after = config_rows(readme_text)
    out = header("mirror.yml", 5, date, version, "File Formats")
    out += [".SH NAME", "mirror.yml \\- configuration file of regcache",
            ".SH SYNOPSIS", "\\fI/etc/regcache/mirror.yml\\fR",
            ".SH DESCRIPTION",
            "\\fBregcache\\fR(8) reads its configuration from the YAML file given with",
            "\\fB\\-c\\fR \\fIFILE\\fR. Nested keys are written here with dots:",
            "\\fBcache.ttl\\fR is \\fBttl\\fR in the mapping \\fBcache\\fR, and",
            "\\fBupstreams[].url\\fR is \\fBurl\\fR in each item of the sequence \\fBupstreams\\fR.",
            ".PP"]
    out += paragraphs(before)
    out += [".SH KEYS"]
    for key_cell, default, meaning in rows:
        keys = row_keys(key_cell)
        out += [".TP", ", ".join("\\fB" + escape(k).replace("-", "\\-") + "\\fR" for k in keys)
                + " (default: " + inline(default) + ")", text_line(inline(meaning))]
    if "".join(after).strip():
        out += [".SH UNITS"] + paragraphs(after)
    out += [
        ".SH EXAMPLE",
        "A mirror of Docker Hub for the local network, its store in \\fI/var/lib/regcache\\fR,",
        "evicting what was not pulled for two weeks:",
        ".PP", ".RS 4", ".nf",
        "listen: 0.0.0.0:5000",
        "storage: /var/lib/regcache",
        "upstreams:",
        "  \\- name: docker.io",
        "    url: https://registry\\-1.docker.io",
        "cache:",
        "  ttl: 14d",
        "  max_size: 200GiB",
        ".fi", ".RE",
        ".PP",
        "\\fBregcache check\\-config \\-c /etc/regcache/mirror.yml\\fR checks a file before the",
        "service is restarted with it.",
        ".SH FILES",
        ".TP",
        "\\fI/etc/regcache/mirror.yml\\fR",
        "The packaged service's configuration (a dpkg conffile).",
        ".TP",
        "\\fI/usr/share/doc/regcache/examples/mirror.yml.example\\fR",
        "Every key with its default and a comment.",
        ".SH SEE ALSO",
        "\\fBregcache\\fR(8)",
    ]
    return "\n".join(out) + "\n"


def page_date(readme):
    """SOURCE_DATE_EPOCH (set by dpkg-buildpackage) when given, for a reproducible page; else the
    README's modification time."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = int(epoch) if epoch else int(os.stat(readme).st_mtime)
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime("%Y-%m-%d")


def main(argv):
    if len(argv) != 4:
        raise SystemExit("usage: mkman.py README.md OUTDIR VERSION")
    readme, outdir, version = argv[1:]
    text = open(readme, encoding="utf-8").read()
    date = page_date(readme)
    for name, render in (("regcache.8", regcache_8), ("mirror.yml.5", mirror_yml_5)):
        with open(os.path.join(outdir, name), "w", encoding="ascii") as f:
            f.write(render(text, date, version))


if __name__ == "__main__":
    main(sys.argv)
