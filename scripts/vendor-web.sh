#!/usr/bin/env bash
# Copies the pinned third-party ES modules of the member web app (muxernode/web/package.json)
# into muxernode/web/vendor/, each with its LICENSE. Run it after changing a pinned version
# and commit the result: the served files then need no build step and no npm on a member's
# or an operator's machine. Only the ESM files the browser loads are copied (no maps,
# typings or sources).
set -euo pipefail
cd "$(dirname "$0")/.."
web=muxernode/web
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$web/package.json" "$tmp/"
(cd "$tmp" && npm install --ignore-scripts --no-audit --no-fund --omit=dev >/dev/null)
nm=$tmp/node_modules
out=$web/vendor
rm -rf "$out"
mkdir -p "$out"/{preact,htm,noble-ed25519,noble-hashes,noble-ciphers,msgpack}

cp "$nm/preact/dist/preact.mjs" "$nm/preact/hooks/dist/hooks.mjs" "$nm/preact/LICENSE" "$out/preact/"
cp "$nm/htm/dist/htm.mjs" "$nm/htm/LICENSE" "$out/htm/"
cp "$nm/@noble/ed25519/index.js" "$nm/@noble/ed25519/LICENSE" "$out/noble-ed25519/"
# noble's modules import each other by relative path: copy the whole flat set
cp "$nm"/@noble/hashes/*.js "$nm/@noble/hashes/LICENSE" "$out/noble-hashes/"
cp "$nm"/@noble/ciphers/*.js "$nm/@noble/ciphers/LICENSE" "$out/noble-ciphers/"
(cd "$nm/@msgpack/msgpack/dist.esm" && find . -name '*.mjs' -exec cp --parents {} "$OLDPWD/$out/msgpack/" \;)
cp "$nm/@msgpack/msgpack/LICENSE" "$out/msgpack/"

# the exact versions copied, for the record next to the files
(cd "$nm" && for p in preact htm @noble/ed25519 @noble/hashes @noble/ciphers @msgpack/msgpack; do
    node -e "const p=require('./$p/package.json');console.log(p.name+' '+p.version+' '+p.license)"
done) > "$out/VERSIONS"
cat "$out/VERSIONS"
