#!/usr/bin/env bash
# Vendor KaTeX (pinned) into generator/docs/assets/katex/ for `cardgen docs`: the HTML
# book typesets its math offline, from file://, so the script, the stylesheet and
# the fonts ship inside the package.  Only woff2 fonts are kept (every browser
# the book targets reads them); the stylesheet's woff/ttf fallbacks are removed
# so nothing asks for a file that is not there.
set -euo pipefail
VERSION=0.19.1
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/generator/docs/assets/katex"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "katex@$VERSION" >/dev/null
echo "sha256 $(sha256sum "katex-$VERSION.tgz" | cut -d' ' -f1)  katex-$VERSION.tgz"
tar xzf "katex-$VERSION.tgz"
rm -rf "$dest"
mkdir -p "$dest/fonts"
cp package/dist/katex.min.js package/LICENSE "$dest/"
cp package/dist/fonts/*.woff2 "$dest/fonts/"
sed -E 's/,url\(fonts\/[A-Za-z0-9_-]+\.woff\) format\("woff"\),url\(fonts\/[A-Za-z0-9_-]+\.ttf\) format\("truetype"\)//g' \
    package/dist/katex.min.css > "$dest/katex.min.css"
if grep -qE '\.(woff|ttf)\)' "$dest/katex.min.css"; then
    echo "vendor_katex: a woff/ttf fallback is left in katex.min.css" >&2
    exit 1
fi
echo "KaTeX $VERSION from the npm registry (npm pack katex@$VERSION); see scripts/vendor_katex.sh" > "$dest/VERSION"
du -sh "$dest"
