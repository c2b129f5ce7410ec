#!/usr/bin/env bash
# Fetch the official raw Multi30k (WMT multimodal task 1) files into a directory as
#   train.LANG  val.LANG  test2016.LANG      (LANG in en de fr cs)
#
# Source: https://github.com/multi30k/dataset, data/task1/raw/{train,val,test_2016_flickr}.LANG.gz
# at a pinned commit, gunzipped byte for byte; test_2016_flickr.* is renamed test2016.*.
# Each result is checked against the SHA-256 of the known release (skip with --no-verify).
#
# Usage:
#   scripts/get_multi30k.sh OUT_DIR                      # download (needs curl or wget)
#   scripts/get_multi30k.sh OUT_DIR --from LOCAL_DIR     # copy from a local copy instead;
#        LOCAL_DIR may hold the raw .gz files (train.en.gz, test_2016_flickr.en.gz, ...) or
#        already unpacked files (train.en, test2016.en or test_2016_flickr.en, ...)
#   options: --link (symlink unpacked local files instead of copying), --langs "en de",
#            --commit SHA, --no-verify
#
# The data has no licence file; its README restricts use to non-commercial research and
# education (images: Flickr terms). Cite Elliott et al. 2016 (W16-3210) for en/de.
set -euo pipefail

COMMIT="a3d2e0d26b56f3846f66a952536ffed4e401d05a"
LANGS="en de fr cs"
FROM=""
LINK=0
VERIFY=1
OUT=""

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
die() { echo "get_multi30k.sh: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --from) [ $# -ge 2 ] || die "--from needs a directory"; FROM="$2"; shift 2 ;;
        --langs) [ $# -ge 2 ] || die "--langs needs a list"; LANGS="$2"; shift 2 ;;
        --commit) [ $# -ge 2 ] || die "--commit needs a SHA"; COMMIT="$2"; shift 2 ;;
        --link) LINK=1; shift ;;
        --no-verify) VERIFY=0; shift ;;
        -h|--help) usage 0 ;;
        -*) die "unknown option $1" ;;
        *) [ -z "$OUT" ] || die "only one output directory"; OUT="$1"; shift ;;
    esac
done
[ -n "$OUT" ] || usage 2

# SHA-256 of the unpacked files (Multi30k commit a3d2e0d; data unchanged since 2018).
expected_sha() {
    case "$1" in
        train.cs) echo 2be68b38c8d586ff4f54eb13cc6e1baaaa053695b3f070d3038303a47f2268da ;;
        train.de) echo 2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72 ;;
        train.en) echo 460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6 ;;
        train.fr) echo 5925a3c18f1587b6b54b87743106e6e8ab93618edb6f65d19eac0621f853a10d ;;
        val.cs) echo d53827e469b0a1ca8d57e9e26b2b64c4bc4b33f5479c7b03ae87ae5c882c3e33 ;;
        val.de) echo 660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660 ;;
        val.en) echo 1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227 ;;
        val.fr) echo 5304e444d842e962b2dda4d816b70b22a1765b15401642b7ca37a67477e708dc ;;
        test2016.cs) echo 45adb85f688de8407fddcbe1b36dca15d12aab868149b337e2576f2d6d2ff8d8 ;;
        test2016.de) echo 4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16 ;;
        test2016.en) echo 399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182 ;;
        test2016.fr) echo cb3160d69b002bb638e66cc7612fcd56cb0af82eadc9c142dedc438afb885ef6 ;;
        *) echo "" ;;
    esac
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
    else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

download() {  # URL DEST
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 3 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        die "neither curl nor wget is installed (or use --from LOCAL_DIR)"
    fi
}

if [ -n "$FROM" ]; then
    [ -d "$FROM" ] || die "$FROM: not a directory"
    FROM="$(cd "$FROM" && pwd)"
fi
mkdir -p "$OUT"
STAGE="$(mktemp -d "$OUT/.multi30k.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
BASE="https://raw.githubusercontent.com/multi30k/dataset/$COMMIT/data/task1/raw"

for split in train val test2016; do
    raw="$split"
    [ "$split" = test2016 ] && raw="test_2016_flickr"
    for lang in $LANGS; do
        name="$split.$lang"
        dest="$STAGE/$name"
        if [ -z "$FROM" ]; then
            echo "downloading $raw.$lang.gz" >&2
            download "$BASE/$raw.$lang.gz" "$dest.gz" || die "download of $BASE/$raw.$lang.gz failed"
            gunzip -c "$dest.gz" > "$dest" || die "$raw.$lang.gz: not a valid gzip file"
            rm -f "$dest.gz"
        elif [ -f "$FROM/$raw.$lang.gz" ]; then
            gunzip -c "$FROM/$raw.$lang.gz" > "$dest" || die "$FROM/$raw.$lang.gz: not valid gzip"
        elif [ -f "$FROM/$name" ] || [ -f "$FROM/$raw.$lang" ]; then
            src="$FROM/$name"
            [ -f "$src" ] || src="$FROM/$raw.$lang"
            if [ "$LINK" = 1 ]; then ln -s "$src" "$dest"; else cp "$src" "$dest"; fi
        else
            die "$FROM has neither $raw.$lang.gz nor $name"
        fi
        if [ "$VERIFY" = 1 ]; then
            want="$(expected_sha "$name")"
            if [ -n "$want" ]; then
                got="$(sha256_of "$dest")"
                [ "$got" = "$want" ] || die "$name: SHA-256 $got, expected $want (--no-verify to skip)"
            fi
        fi
    done
done

for file in "$STAGE"/*; do
    mv -f "$file" "$OUT/"
done
for split in train val test2016; do
    for lang in $LANGS; do
        printf '%s\t%s lines\n' "$OUT/$split.$lang" "$(wc -l < "$OUT/$split.$lang" | tr -d ' ')"
    done
done
