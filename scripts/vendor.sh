#!/usr/bin/env bash
# Refresh the chat page's vendored browser libraries from npm.
#
#   scripts/vendor.sh            install the versions pinned in scripts/vendor/package-lock.json
#   scripts/vendor.sh --latest   move the pins to the newest releases first
#
# It copies the browser builds into chat/static/chat/vendor/ with their licenses and rewrites
# the version table in chat/static/chat/vendor/README.md. Users never run it: the files are
# committed, so the page needs no build step.
set -euo pipefail
cd "$(dirname "$0")/.."
src=scripts/vendor
out=chat/static/chat/vendor

if [ "${1:-}" = "--latest" ]; then
  (cd "$src" && npm install --no-audit --no-fund --save-exact marked@latest dompurify@latest @highlightjs/cdn-assets@latest)
else
  (cd "$src" && npm ci --no-audit --no-fund)
fi

nm="$src/node_modules"
hl="$nm/@highlightjs/cdn-assets"
cp "$nm/marked/lib/marked.esm.js" "$out/marked.esm.js"
cp "$nm/marked/LICENSE" "$out/LICENSE.marked"
cp "$nm/dompurify/dist/purify.es.mjs" "$out/purify.es.mjs"
cp "$nm/dompurify/LICENSE" "$out/LICENSE.dompurify"
cp "$nm/dompurify/LICENSE-MPL" "$out/LICENSE-MPL.dompurify"
cp "$hl/es/highlight.min.js" "$out/highlight.min.js"
cp "$hl/styles/github.min.css" "$out/highlight-light.min.css"
cp "$hl/styles/github-dark.min.css" "$out/highlight-dark.min.css"
cp "$hl/LICENSE" "$out/LICENSE.highlight.js"
# Source-map comments point at files we do not ship: drop them, so browsers do not ask for them.
sed -i '/^\/\/# sourceMappingURL=/d' "$out/marked.esm.js" "$out/purify.es.mjs"

version() { node -p "require('./$nm/$1/package.json').version"; }
license() { node -p "require('./$nm/$1/package.json').license"; }
table=$(cat <<TABLE
| library | npm package | version | license | files |
| --- | --- | --- | --- | --- |
| marked (Markdown to HTML) | \`marked\` | $(version marked) | $(license marked) | \`marked.esm.js\`, \`LICENSE.marked\` |
| DOMPurify (HTML sanitizer) | \`dompurify\` | $(version dompurify) | $(license dompurify) | \`purify.es.mjs\`, \`LICENSE.dompurify\`, \`LICENSE-MPL.dompurify\` |
| highlight.js (code highlighting) | \`@highlightjs/cdn-assets\` | $(version @highlightjs/cdn-assets) | $(license @highlightjs/cdn-assets) | \`highlight.min.js\`, \`highlight-light.min.css\`, \`highlight-dark.min.css\`, \`LICENSE.highlight.js\` |
TABLE
)
python3 - "$out/README.md" "$table" <<'PY'
import re, sys
path, table = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
text = re.sub(r"<!-- versions -->.*<!-- /versions -->", lambda m: f"<!-- versions -->\n{table}\n<!-- /versions -->", text, flags=re.S)
open(path, "w", encoding="utf-8").write(text)
PY
echo "Vendored into $out:"
sed -n '/<!-- versions -->/,/<!-- \/versions -->/p' "$out/README.md"
