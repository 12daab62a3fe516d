#!/usr/bin/env bash
# Fetch the JavaScript/CSS Visdom's page needs, from the npm registry, for an offline server.
#
# visdom 0.2.4 ships only its own main.js and styles; `python -m visdom.server` downloads the
# rest from unpkg/cdn.plot.ly/d3js.org at every start, which fails without internet, and its
# page then answers 403. This script gets the same files, at the versions visdom pins, with
# `npm pack` (the registry is the one source reachable here), and puts them with visdom's own
# files in a static directory that `python -m vizdebug_visdom.server` serves:
#
#   ${VIZDEBUG_VISDOM_STATIC:-${XDG_CACHE_HOME:-$HOME/.cache}/vizdebug/visdom-static-<version>}
#
# Nothing is written into the Python environment. Idempotent: exits at once when the directory
# is complete. MathJax (LaTeX in text windows, 60 MB) is left out; vizdebug's windows do not
# use it. Needs npm (Node.js); Python from $VIZDEBUG_PYTHON, .venv/bin/python or python3.
set -euo pipefail

PY=${VIZDEBUG_PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
VISDOM_DIR=$("$PY" -c 'import os, visdom; print(os.path.dirname(visdom.__file__))') || {
    echo "setup-visdom-static: visdom is not installed for $PY (pip install 'vizdebug[visdom]')" >&2
    exit 2
}
VERSION=$(cat "$VISDOM_DIR/VERSION" 2>/dev/null || echo unknown)
DEST=${VIZDEBUG_VISDOM_STATIC:-${XDG_CACHE_HOME:-$HOME/.cache}/vizdebug/visdom-static-$VERSION}

# package@version  file-in-tarball  destination (relative to $DEST)
FILES=(
    "jquery@3.1.1 dist/jquery.min.js js/jquery.min.js"
    "bootstrap@3.3.7 dist/js/bootstrap.min.js js/bootstrap.min.js"
    "bootstrap@3.3.7 dist/css/bootstrap.min.css css/bootstrap.min.css"
    "bootstrap@3.3.7 dist/fonts/glyphicons-halflings-regular.eot fonts/glyphicons-halflings-regular.eot"
    "bootstrap@3.3.7 dist/fonts/glyphicons-halflings-regular.woff2 fonts/glyphicons-halflings-regular.woff2"
    "bootstrap@3.3.7 dist/fonts/glyphicons-halflings-regular.woff fonts/glyphicons-halflings-regular.woff"
    "bootstrap@3.3.7 dist/fonts/glyphicons-halflings-regular.ttf fonts/glyphicons-halflings-regular.ttf"
    "bootstrap@3.3.7 dist/fonts/glyphicons-halflings-regular.svg fonts/glyphicons-halflings-regular.svg"
    "react@16.2.0 umd/react.production.min.js js/react-react.min.js"
    "react-dom@16.2.0 umd/react-dom.production.min.js js/react-dom.min.js"
    "react-modal@3.1.10 dist/react-modal.min.js js/react-modal.min.js"
    "plotly.js-dist-min@2.11.1 plotly.min.js js/plotly-plotly.min.js"
    "sjcl@1.0.7 sjcl.js js/sjcl.js"
    "layout-bin-packer@1.4.0 dist/layout-bin-packer.js js/layout_bin_packer.js"
    "d3@3.5.17 d3.min.js js/d3.v3.min.js"
    "d3-selection-multi@1.0.1 build/d3-selection-multi.js js/d3-selection-multi.v1.js"
    "save-svg-as-png@1.4.17 lib/saveSvgAsPng.js js/saveSvgAsPng.js"
    "react-resizable@1.4.6 css/styles.css css/react-resizable-styles.css"
    "react-grid-layout@0.16.3 css/styles.css css/react-grid-layout-styles.css"
)

complete() {
    [ -f "$DEST/js/main.js" ] || return 1
    for entry in "${FILES[@]}"; do
        read -r _pkg _src dst <<<"$entry"
        [ -s "$DEST/$dst" ] || return 1
    done
}

if complete; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "setup-visdom-static: npm is missing; install Node.js (e.g. 'apt-get install -y npm')" >&2
    exit 2
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/static"
cp -R "$VISDOM_DIR/static/." "$WORK/static/"
mkdir -p "$WORK/static/js" "$WORK/static/css" "$WORK/static/fonts"

PACKAGES=$(for entry in "${FILES[@]}"; do read -r pkg _ <<<"$entry"; echo "$pkg"; done | sort -u)
# shellcheck disable=SC2086  # one argument per package
(cd "$WORK" && npm pack --silent $PACKAGES >/dev/null)

for entry in "${FILES[@]}"; do
    read -r pkg src dst <<<"$entry"
    tarball="$WORK/${pkg%@*}-${pkg##*@}.tgz"  # what npm pack names it
    tar --warning=no-unknown-keyword -xzOf "$tarball" "package/$src" >"$WORK/static/$dst"
done

mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.tmp"
mv "$WORK/static" "$DEST.tmp"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "setup-visdom-static: Visdom's page files are in $DEST"
